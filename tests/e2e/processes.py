"""Child processes for e2e and fault tests: start, tag, stop, and prove none is left.

Every child is started in its own session (a Ctrl-C on pytest does not hit it directly) and
with PR_SET_PDEATHSIG, so even a killed pytest leaves nothing behind. Children carry a tag in
their environment, which every descendant inherits (forkservers, pool children, Chromium):
`reap_tagged` finds any that is still running, even one orphaned and adopted by init.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

STOP_GRACE_S = 10.0
ORPHAN_GRACE_S = 5.0  # for helpers (a forkserver, a tracker) to notice their owner is gone
TAG_VAR = "E2E_PROCESS_TAG"


def outrider_command() -> list[str]:
    """The installed `outrider` script of this venv (else `python -m outrider`)."""
    script = Path(sys.executable).with_name("outrider")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "outrider"]


def die_with_parent() -> None:
    """Between fork and exec: have the kernel SIGKILL the child if pytest dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def new_tag() -> str:
    return uuid.uuid4().hex


def tagged(tag: str) -> list[psutil.Process]:
    """Every running process whose environment carries this tag, wherever it was reparented."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(TAG_VAR) == tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:120]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def reap_tagged(tag: str, timeout_s: float = ORPHAN_GRACE_S) -> list[str]:
    """Wait for the tagged processes to end, kill what is left; returns what had to be killed."""
    deadline = time.monotonic() + timeout_s
    left = tagged(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = tagged(tag)
    survivors = [describe(process) for process in left]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return survivors


def spawn(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a child with stdout and stderr going to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def process_tree(procs: list[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    """The live processes and all their descendants, as they are now."""
    tree: list[psutil.Process] = []
    for proc in procs:
        if proc.poll() is not None:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(proc.pid)
            tree += [root, *root.children(recursive=True)]
    return tree


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie counts as gone: it runs nothing)."""
    left = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
    return left


def terminate(procs: list[subprocess.Popen[bytes]], tree: list[psutil.Process]) -> list[str]:
    """SIGTERM, wait, SIGKILL; returns a description of whatever survived all that."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _, left = psutil.wait_procs(alive(tree), timeout=2)
    survivors = [f"{p.pid} {p.name()}" for p in alive(left)]
    for process in alive(left):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return survivors


async def run_command(
    args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 60.0
) -> tuple[int, str, str]:
    """Run a command to completion without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()

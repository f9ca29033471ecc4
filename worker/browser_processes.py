"""Chromium's processes: find them, measure them, kill them, and reap what they leave behind.

Playwright's node driver starts Chromium in a process group of its own and SIGKILLs that group
when it exits; it exits when its stdin closes, i.e. when the worker dies however it dies (even
SIGKILL), so Chromium goes with the worker. Chromium leaves orphans on every exit (zygotes, the
GPU process, crashpad handlers), zombies forever under an init that does not reap; so a browser
worker makes itself a child subreaper (Linux) while a browser runs and reaps every Chromium
orphan it inherits. Only processes named like Chromium are reaped, never the children that
asyncio or subprocess wait for. Everything here blocks: call it with asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import psutil

PR_SET_CHILD_SUBREAPER = 36
CHROMIUM_NAMES = ("chrom", "headless_shell")  # chromium, chrome, chrome_crashpad_handler
RENDERER_FLAG = "--type=renderer"


class _Subreaper:
    holders = 0
    lock = threading.Lock()


def _prctl_subreaper(on: bool) -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def hold_subreaper() -> None:
    """Adopt orphaned descendants from now on (reference-counted across browser pools)."""
    with _Subreaper.lock:
        _Subreaper.holders += 1
        _prctl_subreaper(True)


def release_subreaper() -> None:
    """Drop one hold; the last one gives orphans back to init."""
    with _Subreaper.lock:
        _Subreaper.holders = max(_Subreaper.holders - 1, 0)
        if _Subreaper.holders == 0:
            _prctl_subreaper(False)


def is_chromium(process: psutil.Process) -> bool:
    return process.name().startswith(CHROMIUM_NAMES)


def _children() -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process().children()
    return []


def reap_chromium() -> int:
    """Reap the Chromium zombies this process adopted; returns how many."""
    reaped = 0
    for child in _children():
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE and is_chromium(child):
                os.waitpid(child.pid, os.WNOHANG)
                reaped += 1
    return reaped


def reap_for(seconds: float) -> None:
    """Reap until no Chromium child is left (crashpad handlers leave a moment after)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reap_chromium()
        if not any(is_chromium(p) for p in _children()):
            return
        time.sleep(0.05)


def _group(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


def terminate_group(pgid: int, wait_s: float = 5.0) -> list[int]:
    """SIGKILL a browser's process group, then reap it; returns the pids still there."""
    if any(is_chromium(p) for p in _group(pgid)):  # never a group that is no longer Chromium's
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while True:
        reap_chromium()
        left = [p.pid for p in _group(pgid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@dataclass(frozen=True)
class Usage:
    """The memory of one browser's processes, in bytes (see `usage`)."""

    total: int
    renderers: dict[int, int]  # pid -> its own memory, one entry per renderer process


def _own_and_file(process: psutil.Process) -> tuple[int, int]:
    """(anonymous + shared-memory resident bytes, file-backed resident bytes)."""
    try:
        with open(f"/proc/{process.pid}/status", "rb") as status:
            fields = dict(line.split(b":", 1) for line in status if line.startswith(b"Rss"))
        kb = {name: int(value.split()[0]) * 1024 for name, value in fields.items()}
        return kb.get(b"RssAnon", 0) + kb.get(b"RssShmem", 0), kb.get(b"RssFile", 0)
    except (OSError, ValueError):  # not Linux, or gone: plain RSS, all of it its own
        return process.memory_info().rss, 0


def _is_renderer(process: psutil.Process, kinds: dict[int, bool]) -> bool:
    known = kinds.get(process.pid)
    if known is None:
        known = kinds[process.pid] = RENDERER_FLAG in process.cmdline()
    return known


def usage(pid: int, kinds: dict[int, bool]) -> Usage:
    """The resident memory of a browser's process tree: each process's own pages (anonymous
    and shared memory) plus the largest file-backed RSS once. Summing plain RSS would count
    the Chromium binary and its libraries, mapped by every process, once per process (about
    3x the real footprint of a browser with 4 pages). Renderers are reported by their own
    pages. `kinds` remembers which pids are renderers across calls (a command line is read
    once); pids gone are forgotten."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return Usage(0, {})
    own_total, files, renderers = 0, 0, {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            own, file_backed = _own_and_file(process)
            own_total, files = own_total + own, max(files, file_backed)
            if _is_renderer(process, kinds):
                renderers[process.pid] = own
    for gone in kinds.keys() - {p.pid for p in processes}:
        del kinds[gone]
    return Usage(own_total + files, renderers)


def kill_renderer(pid: int) -> bool:
    """SIGKILL a Chromium renderer (checked to be one, as pids are reused); whether it was."""
    try:
        process = psutil.Process(pid)
        if not (is_chromium(process) and RENDERER_FLAG in process.cmdline()):
            return False
        process.kill()
    except psutil.Error:
        return False
    return True


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def find_by_argument(argument: str) -> int | None:
    """The descendant of this process started with `argument`, if any: the topmost one, as a
    child forked by it carries the same command line until it execs."""
    found = set()
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if argument in process.cmdline():
                found.add(process)
    for process in found:
        with contextlib.suppress(psutil.Error):
            if process.parent() not in found:
                return process.pid
    return None

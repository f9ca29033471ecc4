"""An Outrider stack for the pipeline scenarios: a fresh database, a private Redis, the target
server, the API, and workers started and stopped the way users run them.

Workers run as `outrider worker --queue Q [--concurrency N]` with OUTRIDER_* settings, and
for same-host loads politeness is off (`OUTRIDER_HOST_RATE_PER_S=0`,
`OUTRIDER_HOST_CONCURRENCY=0`) and loopback is an allowed egress destination. robots.txt stays
obeyed: the target server serves one that allows everything.

Jobs are submitted through `POST /v1/jobs/batch` (1,000 a request); "done" is read from
PostgreSQL: every row `succeeded`, and the last `finished_at` is the end of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from redis import Redis

from benchmarks.common import (
    Processes,
    create_key,
    free_port,
    fresh_database,
    outrider_env,
    private_redis,
    wait_http,
    wait_port,
)
from shared.liveness import REGISTRY_KEY

BATCH = 1000
POLL_S = 0.1


def dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


def bench_env(db: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Outrider's settings for a benchmark: politeness off, loopback allowed, no metrics port."""
    return outrider_env(
        db,
        redis_url,
        OUTRIDER_HOST_RATE_PER_S="0",
        OUTRIDER_HOST_CONCURRENCY="0",
        OUTRIDER_WORKER_METRICS_PORT="0",
        **extra,
    )


class JobsFailed(RuntimeError):
    """Some jobs of a measured run did not succeed."""


@dataclass
class Stack:
    """A running Outrider (API, database, Redis) and the target server."""

    db: str
    redis_url: str
    procs: Processes
    env: dict[str, str]
    target: str
    api: str
    key: str

    def start_workers(
        self, queue: str, count: int, concurrency: int | None = None, timeout_s: float = 60
    ) -> list[subprocess.Popen[bytes]]:
        """Start `count` workers and wait until each has announced itself alive."""
        args = ["worker", "--queue", queue]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        workers = [self.procs.outrider(self.env, *args) for _ in range(count)]
        redis = Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                registered: list[bytes] = redis.zrange(REGISTRY_KEY, 0, -1)  # type: ignore[assignment]
                ids = [raw.decode() for raw in registered]
                if all(any(f":{w.pid}:" in i for i in ids) for w in workers):
                    return workers
                if any(w.poll() is not None for w in workers):
                    raise RuntimeError("a worker exited at start")
                time.sleep(0.1)
        finally:
            redis.close()
        raise RuntimeError("the workers did not start")

    def stop(self, workers: list[subprocess.Popen[bytes]]) -> None:
        self.procs.stop_some(workers)

    def submit(self, specs: list[dict[str, Any]]) -> None:
        auth = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.api, headers=auth, timeout=120) as client:
            for start in range(0, len(specs), BATCH):
                chunk = specs[start : start + BATCH]
                client.post("/v1/jobs/batch", json={"jobs": chunk}).raise_for_status()

    def run(self, specs: list[dict[str, Any]], timeout_s: float | None = None) -> float:
        """Submit `specs` and wait until all succeeded: jobs/s from the first submission to
        the last `finished_at`."""
        started = time.time()
        self.submit(specs)
        limit = timeout_s or 120 + len(specs) / 20
        finished = asyncio.run(wait_all_succeeded(self.db, len(specs), limit))
        return len(specs) / (finished - started)

    def reset(self) -> None:
        """Forget every job, so each round starts from the same empty table."""
        asyncio.run(execute(self.db, "TRUNCATE job CASCADE"))

    def query(self, sql: str) -> Any:
        return asyncio.run(fetchrow(self.db, sql))


async def execute(db: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn(db))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fetchrow(db: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn(db))
    try:
        return await conn.fetchrow(sql)
    finally:
        await conn.close()


DONE_SQL = (
    "SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok,"
    " count(*) FILTER (WHERE status IN ('failed', 'cancelled')) AS bad,"
    " extract(epoch FROM max(finished_at))::float8 AS last FROM job"
)


async def wait_all_succeeded(db: str, total: int, timeout_s: float) -> float:
    """Poll job counts until `total` rows succeeded; returns the last finished_at (epoch)."""
    conn = await asyncpg.connect(dsn(db))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = await conn.fetchrow(DONE_SQL)
            if row["bad"]:
                errors = await conn.fetch(
                    "SELECT error->>'code' AS code, count(*) AS n FROM job"
                    " WHERE status <> 'succeeded' AND error IS NOT NULL GROUP BY 1"
                )
                raise JobsFailed(f"{row['bad']} jobs failed: {[tuple(e) for e in errors]}")
            if row["ok"] >= total:
                return float(row["last"])
            await asyncio.sleep(POLL_S)
        row = await conn.fetchrow(DONE_SQL)
        raise JobsFailed(f"only {row['ok']} of {total} jobs succeeded in {timeout_s:.0f} s")
    finally:
        await conn.close()


@contextlib.contextmanager
def outrider_stack(site_pages: int = 500, **settings: str) -> Iterator[Stack]:
    """Database, Redis, target server and API; workers are the scenario's to start."""
    with fresh_database() as db, private_redis() as redis_url, Processes() as procs:
        env = bench_env(db, redis_url, **settings)
        key = create_key(env)
        target_port, api_port = free_port(), free_port()
        target_args = ["-m", "benchmarks.target_server", str(target_port), str(site_pages)]
        procs.start([sys.executable, *target_args], {})
        procs.outrider(env, "api", "--port", str(api_port))
        wait_port(target_port)
        api = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api}/readyz")
        yield Stack(db, redis_url, procs, env, f"http://127.0.0.1:{target_port}", api, key)

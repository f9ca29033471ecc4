"""The benchmark scenarios of the spine (submit, dispatch) and the registry of all of them.
Each returns a dict of Stats and a verdict."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
from redis import Redis

from benchmarks import (
    scenarios_browser,
    scenarios_cache,
    scenarios_crawl,
    scenarios_fleet,
    scenarios_ledger,
    scenarios_pipeline,
    scenarios_queue,
    scenarios_soak,
)
from benchmarks.common import (
    Processes,
    Sizes,
    Stats,
    create_key,
    free_port,
    fresh_database,
    outrider_env,
    percentile,
    private_redis,
    wait_http,
    wait_port,
    wrk_post,
)

Result = dict[str, Any]


def _dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.contextmanager
def _stack() -> Iterator[tuple[str, str, Processes]]:
    with fresh_database() as db, private_redis() as redis_url, Processes() as procs:
        yield db, redis_url, procs


@contextlib.contextmanager
def _target(procs: Processes) -> Iterator[str]:
    port = free_port()
    procs.start([sys.executable, "-m", "benchmarks.target_server", str(port)], {})
    wait_port(port)
    yield f"http://127.0.0.1:{port}"


def submit_single(rounds: int, seconds: int = 5) -> Result:
    """POST /v1/jobs under wrk load, against FastAPI + pydantic + arq enqueue without auth/DB."""
    with _stack() as (db, redis_url, procs):
        env = outrider_env(db, redis_url)
        key = create_key(env)
        api_port, bare_port = free_port(), free_port()
        procs.outrider(env, "api", "--port", str(api_port))
        bare_env = {**env, "BARE_REDIS_URL": redis_url}
        procs.start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.bare_submit_app:app",
                "--port",
                str(bare_port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            bare_env,
        )
        wait_http(f"http://127.0.0.1:{api_port}/readyz")
        wait_http(f"http://127.0.0.1:{bare_port}/docs")
        body = {"kind": "http", "input": {"url": "http://127.0.0.1:9/ok"}}
        auth = {"Authorization": f"Bearer {key}"}
        ours, bare = Stats("outrider req/s", "req/s"), Stats("bare req/s", "req/s")
        ours_p99, bare_p99 = Stats("outrider p99", "ms"), Stats("bare p99", "ms")
        for port, hdrs in ((api_port, auth), (bare_port, {})):  # warm-up
            wrk_post(f"http://127.0.0.1:{port}/v1/jobs", body, hdrs, seconds=2, connections=16)
        for _ in range(rounds):  # interleaved A B A B
            rps, p99 = wrk_post(
                f"http://127.0.0.1:{api_port}/v1/jobs", body, auth, seconds=seconds, connections=16
            )
            ours.values.append(rps)
            ours_p99.values.append(p99)
            rps, p99 = wrk_post(
                f"http://127.0.0.1:{bare_port}/v1/jobs", body, {}, seconds=seconds, connections=16
            )
            bare.values.append(rps)
            bare_p99.values.append(p99)
    ratio = ours.median / bare.median
    p99_ratio = ours_p99.median / bare_p99.median
    return {
        "stats": [ours, bare, ours_p99, bare_p99],
        "ratio": ratio,
        "target": "req/s ratio >= 0.6 and p99 ratio <= 2",
        "pass": ratio >= 0.6 and p99_ratio <= 2,
        "notes": f"p99 ratio {p99_ratio:.2f}",
    }


def submit_batch(rounds: int, batches: int = 5) -> Result:
    """POST /v1/jobs/batch with 1,000 jobs; every job must be in PostgreSQL and in Redis."""
    with _stack() as (db, redis_url, procs):
        env = outrider_env(db, redis_url)
        key = create_key(env)
        port = free_port()
        procs.outrider(env, "api", "--port", str(port))
        wait_http(f"http://127.0.0.1:{port}/readyz")
        # Every job its own URL (one site's pages, as a crawl submits them), bodies built
        # before the clock starts.
        bodies = [
            json.dumps({"jobs": [_batch_spec(n, i) for i in range(1000)]}).encode()
            for n in range(1 + rounds * batches)
        ]
        stats = Stats("batch jobs/s", "jobs/s")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            client.post("/v1/jobs/batch", content=bodies.pop(), headers=headers).raise_for_status()
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(batches):
                    body = bodies.pop()
                    client.post("/v1/jobs/batch", content=body, headers=headers).raise_for_status()
                stats.values.append(batches * 1000 / (time.perf_counter() - started))
        expected = 1000 * (1 + rounds * batches)
        rows = asyncio.run(_count(db, "SELECT count(*) FROM job"))
        queued = Redis.from_url(redis_url).zcard("arq:queue:default")
    durable = rows == expected and queued == expected
    return {
        "stats": [stats],
        "ratio": None,
        "target": ">= 10,000 jobs/s, all durable and queued",
        "pass": stats.median >= 10_000 and durable,
        "notes": f"{rows} rows, {queued} queued, {expected} expected",
    }


def _batch_spec(batch: int, index: int) -> dict[str, Any]:
    return {"kind": "http", "input": {"url": f"http://127.0.0.1:9/page/{batch}/{index}"}}


async def _count(db: str, sql: str) -> int:
    conn = await asyncpg.connect(_dsn(db))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def dispatch_latency(rounds: int, jobs: int = 100) -> Result:
    """Submit to an idle system one job at a time; latency = started_at - created_at."""
    with _stack() as (db, redis_url, procs), _target(procs) as target:
        env = outrider_env(db, redis_url)
        key = create_key(env)
        port = free_port()
        procs.outrider(env, "api", "--port", str(port))
        procs.outrider(env, "worker", "--queue", "default")
        wait_http(f"http://127.0.0.1:{port}/readyz")
        time.sleep(1)
        p50, p99 = Stats("dispatch p50", "ms"), Stats("dispatch p99", "ms")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            auth = {"Authorization": f"Bearer {key}"}
            for _ in range(rounds):
                ids = []
                for _ in range(jobs):
                    spec = {"kind": "http", "input": {"url": f"{target}/ok"}}
                    ids.append(client.post("/v1/jobs", json=spec, headers=auth).json()["id"])
                    time.sleep(0.03)  # idle between jobs
                latencies = asyncio.run(_dispatch_latencies(db, ids))
                p50.values.append(percentile(latencies, 50))
                p99.values.append(percentile(latencies, 99))
    return {
        "stats": [p50, p99],
        "ratio": None,
        "target": "p50 <= 20 ms, p99 <= 100 ms",
        "pass": p50.median <= 20 and p99.median <= 100,
        "notes": "",
    }


async def _dispatch_latencies(db: str, ids: list[str]) -> list[float]:
    conn = await asyncpg.connect(_dsn(db))
    try:
        for _ in range(200):
            rows = await conn.fetch(
                "SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms FROM job "
                "WHERE id = ANY($1::uuid[]) AND started_at IS NOT NULL",
                ids,
            )
            if len(rows) == len(ids):
                return [float(r["ms"]) for r in rows]
            await asyncio.sleep(0.1)
        raise RuntimeError("jobs did not start")
    finally:
        await conn.close()


# Every scenario, in the order `make bench` runs them: (rounds, sizes) -> result.
SCENARIOS: dict[str, Callable[[int, Sizes], Result]] = {
    "submit_single": lambda rounds, sizes: submit_single(rounds, sizes.submit_seconds),
    "submit_batch": lambda rounds, sizes: submit_batch(rounds),
    "dispatch_latency": lambda rounds, sizes: dispatch_latency(rounds),
    "e2e_http": scenarios_pipeline.e2e_http,
    "concurrency": scenarios_pipeline.concurrency,
    "fetch": scenarios_pipeline.fetch,
    "cache": scenarios_cache.cache,
    "render": scenarios_browser.render,
    "soak": scenarios_soak.soak,
    "crawl": scenarios_crawl.crawl,
    "crawl_rss": lambda rounds, sizes: scenarios_crawl.crawl_rss(sizes.crawl_rss_pages),
    "queue_control": scenarios_queue.queue_control,
    "ledger": scenarios_ledger.ledger,
    "fleet": scenarios_fleet.fleet,
}

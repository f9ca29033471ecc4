"""Bare baseline for end-to-end `http` jobs: arq workers that call the server with aiohttp and
insert one result row with asyncpg. No claim, no fencing, no attempts, no egress checks.

    BARE_REDIS_URL=... BARE_DSN=postgresql://... python -m benchmarks.bare_worker

The same arq settings as Outrider's workers where they matter: uvloop, `max_jobs`
(BARE_MAX_JOBS, default 50 = OUTRIDER_WORKER_CONCURRENCY's default), `keep_result=0` and the
poll delay (BARE_POLL_DELAY; the harness passes Outrider's 0.01 s). The harness creates
`bare_result` (TABLE_SQL) and enqueues with `enqueue`.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import asyncpg
from arq.connections import RedisSettings
from arq.worker import Worker

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS bare_result (job_id text PRIMARY KEY, status int, body jsonb,"
    " finished_at timestamptz NOT NULL DEFAULT clock_timestamp())"
)


async def enqueue(redis_url: str, jobs: list[tuple[str, str]]) -> None:
    """Enqueue (job id, url) pairs on the `bare` queue, up to 500 at a time."""
    from arq.connections import create_pool

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        for start in range(0, len(jobs), 500):
            await asyncio.gather(
                *(
                    pool.enqueue_job("run_job", job_id, url, _job_id=job_id, _queue_name="bare")
                    for job_id, url in jobs[start : start + 500]
                )
            )
    finally:
        await pool.aclose()


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = aiohttp.ClientSession()
    ctx["db"] = await asyncpg.create_pool(os.environ["BARE_DSN"], min_size=2, max_size=10)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()
    await ctx["db"].close()


async def run_job(ctx: dict[str, Any], job_id: str, url: str) -> None:
    async with ctx["http"].get(url) as response:
        body = await response.text()
        status = response.status
    await ctx["db"].execute(
        "INSERT INTO bare_result (job_id, status, body) VALUES ($1, $2, $3)",
        job_id,
        status,
        json.dumps({"body": body}),
    )


def main() -> None:
    import uvloop  # the same event loop as Outrider's workers

    asyncio.set_event_loop(uvloop.new_event_loop())
    worker = Worker(
        functions=[run_job],
        queue_name="bare",
        redis_settings=RedisSettings.from_dsn(os.environ["BARE_REDIS_URL"]),
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=int(os.environ.get("BARE_MAX_JOBS", "50")),
        keep_result=0,
        poll_delay=float(os.environ.get("BARE_POLL_DELAY", "0.05")),
    )
    worker.run()


if __name__ == "__main__":
    main()

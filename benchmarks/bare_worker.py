"""Bare baseline for end-to-end `http` jobs: arq workers that call the server with aiohttp and
insert one result row with asyncpg. No claim, no fencing, no attempts, no egress checks.

    BARE_REDIS_URL=... BARE_DSN=postgresql://... python -m benchmarks.bare_worker
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
        max_jobs=50,
        keep_result=0,
        poll_delay=float(os.environ.get("BARE_POLL_DELAY", "0.05")),
    )
    worker.run()


if __name__ == "__main__":
    main()

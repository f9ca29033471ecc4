"""`outrider queue`, `outrider workers`, `outrider jobs` and `outrider jobs retry`: the operator's
view of the whole installation (every owner), read from the database and QueueClient directly."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outrider.tables import age, format_table, when
from shared.db import create_engine, create_sessionmaker
from shared.liveness import live_workers
from shared.models import utcnow
from shared.queue import JobQueue, QueueClient, create_redis, set_paused
from shared.repositories.operator import JobQuery, recent_jobs, retry_batch
from shared.services.status import queue_snapshots
from shared.settings import Settings

T = TypeVar("T")
RETRY_BATCH = 500
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '1h', '2d', '1w' as a timedelta; ValueError otherwise."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h, 2d or 1w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@asynccontextmanager
async def _clients(
    settings: Settings,
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], QueueClient]]:
    engine = create_engine(settings)
    redis = create_redis(settings.resolved_redis_url, patient=False)
    try:
        yield create_sessionmaker(engine), redis
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()


async def _with_clients(
    settings: Settings, use: Callable[[async_sessionmaker[AsyncSession], QueueClient], Awaitable[T]]
) -> T:
    async with _clients(settings) as (sessionmaker, redis):
        return await use(sessionmaker, redis)


QUEUE_HEADERS = (
    "QUEUE", "READY", "DEFERRED", "RUNNING", "OLDEST READY", "DONE 1m/5m/60m",
    "FAILED 1m/5m/60m", "JOBS/S", "WORKERS", "STATE",
)  # fmt: skip


async def render_queue(settings: Settings) -> str:
    """Per queue: depth, the oldest ready job's wait, recent outcomes, throughput, workers."""

    async def read(sessionmaker: async_sessionmaker[AsyncSession], redis: QueueClient) -> str:
        async with sessionmaker() as session:
            snapshots = await queue_snapshots(session, redis, utcnow())
        rows = [
            (
                q.name,
                str(q.ready),
                str(q.deferred),
                str(q.running),
                age(q.oldest_ready_age_s),
                "/".join(str(q.completed[w]) for w in ("1m", "5m", "60m")),
                "/".join(str(q.failed[w]) for w in ("1m", "5m", "60m")),
                f"{q.throughput_per_s:g}",
                str(q.workers),
                "paused" if q.paused else "active",
            )
            for q in snapshots
        ]
        return format_table(QUEUE_HEADERS, rows)

    return await _with_clients(settings, read)


async def pause_queue(settings: Settings, name: str, paused: bool) -> None:
    """Pause or resume a queue (what POST /v1/queues/{name}/pause|resume do)."""

    async def write(_: async_sessionmaker[AsyncSession], redis: QueueClient) -> None:
        await set_paused(redis, name, paused)

    await _with_clients(settings, write)


WORKER_HEADERS = (
    "ID", "QUEUE", "CONCURRENCY", "RUNNING", "DONE", "FAILED", "STARTED", "HEARTBEAT", "VERSION",
)  # fmt: skip


async def render_workers(settings: Settings) -> str:
    """Every live worker process (a dead one is gone within three heartbeats)."""

    async def read(_: async_sessionmaker[AsyncSession], redis: QueueClient) -> str:
        workers = await live_workers(redis)
        if not workers:
            return "No live workers."
        now = utcnow()
        rows = []
        for info in workers:
            beat = datetime.fromisoformat(info["heartbeat_at"])
            rows.append(
                (
                    str(info["worker_id"]),
                    str(info["queue"]),
                    str(info["concurrency"]),
                    str(info.get("running", 0)),
                    str(info.get("done", 0)),
                    str(info.get("failed", 0)),
                    when(datetime.fromisoformat(info["started_at"])),
                    f"{age((now - beat).total_seconds())} ago",
                    str(info.get("version", "-")),
                )
            )
        return format_table(WORKER_HEADERS, rows)

    return await _with_clients(settings, read)


JOB_HEADERS = ("ID", "OWNER", "KIND", "STATUS", "ATTEMPTS", "CREATED", "FINISHED", "ERROR")


async def render_jobs(settings: Settings, query: JobQuery, limit: int) -> str:
    """The newest matching jobs, newest first, with their error if they have one."""

    async def read(sessionmaker: async_sessionmaker[AsyncSession], _: QueueClient) -> str:
        async with sessionmaker() as session:
            found = await recent_jobs(session, query, limit)
        if not found:
            return "No jobs match."
        rows = []
        for job, owner in found:
            error = job.error or {}
            problem = f"{error.get('code')}: {error.get('message', '')}" if error else "-"
            rows.append(
                (
                    str(job.id),
                    owner,
                    job.kind,
                    job.status,
                    f"{job.attempts}/{job.max_attempts}",
                    when(job.created_at),
                    when(job.finished_at),
                    problem[:120],
                )
            )
        return format_table(JOB_HEADERS, rows)

    return await _with_clients(settings, read)


async def retry_jobs(settings: Settings, query: JobQuery, limit: int | None) -> int:
    """Queue matching failed (or cancelled) jobs again, a batch per transaction, each batch
    enqueued after its commit; returns how many were retried."""

    async def run(sessionmaker: async_sessionmaker[AsyncSession], redis: QueueClient) -> int:
        retried = 0
        while limit is None or retried < limit:
            size = RETRY_BATCH if limit is None else min(RETRY_BATCH, limit - retried)
            async with sessionmaker.begin() as session:
                jobs = await retry_batch(session, query, size)
            if not jobs:
                break
            # If Redis is down, the reconciler enqueues them once it is back: rows are the truth.
            await JobQueue(redis, settings.events_retention_s, settings.priority_aging_s).enqueue(
                jobs, "retry"
            )
            retried += len(jobs)
        return retried

    return await _with_clients(settings, run)

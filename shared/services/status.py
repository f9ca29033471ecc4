"""What the queues and workers are doing now: the job table's counts plus Redis.

Every number comes from an indexed aggregate (`ix_job_status_run_after` for the live jobs,
`ix_job_finished_at` for the last hour's outcomes) or a constant-time Redis call: nothing here
reads every job or scans Redis keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.liveness import live_workers
from shared.models import Job, JobStatus
from shared.queue import paused_queues, queue_key
from shared.specs import QUEUES

WINDOWS_S = {"1m": 60, "5m": 300, "60m": 3600}
THROUGHPUT_WINDOW_S = 10


@dataclass
class QueueSnapshot:
    """One queue's numbers at one moment."""

    name: str
    ready: int = 0
    deferred: int = 0
    running: int = 0
    oldest_ready_age_s: float | None = None
    completed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WINDOWS_S, 0))
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WINDOWS_S, 0))
    throughput_per_s: float = 0.0
    workers: int = 0
    in_redis: int = 0
    paused: bool = False


async def queue_snapshots(
    session: AsyncSession, redis: Redis, now: datetime
) -> list[QueueSnapshot]:
    """Every queue (the known ones first, then any other the table holds)."""
    queues: dict[str, QueueSnapshot] = {name: QueueSnapshot(name) for name in QUEUES}

    def of(name: str) -> QueueSnapshot:
        return queues.setdefault(name, QueueSnapshot(name))

    await _job_counts(session, now, of)
    for info in await live_workers(redis):
        of(str(info.get("queue"))).workers += 1
    async with redis.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.zcard(queue_key(name))
        sizes = await pipe.execute()
    for snapshot, size in zip(list(queues.values()), sizes, strict=True):
        snapshot.in_redis = int(size)
    for name in await paused_queues(redis, list(queues)):
        queues[name].paused = True
    return list(queues.values())


async def _job_counts(session: AsyncSession, now: datetime, of: Any) -> None:
    # One statement, so one snapshot: a job that finishes meanwhile is counted once, either
    # as running or as done. The WHERE is two index ranges (live jobs; the last hour's ends).
    queued = Job.status == JobStatus.QUEUED
    due = queued & (Job.run_after <= now)
    ended = {status: Job.status == status for status in (JobStatus.SUCCEEDED, JobStatus.FAILED)}
    windows = {**WINDOWS_S, "throughput": THROUGHPUT_WINDOW_S}
    since = {name: now - timedelta(seconds=s) for name, s in windows.items()}
    recent = [
        func.count().filter(ended[status] & (Job.finished_at >= since[name]))
        for status in ended
        for name in windows
    ]
    rows = await session.execute(
        select(
            Job.queue,
            func.count().filter(due),
            func.count().filter(queued & (Job.run_after > now)),
            func.count().filter(Job.status == JobStatus.RUNNING),
            func.min(Job.run_after).filter(due),
            *recent,
        )
        .where(
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
            | (Job.finished_at >= since["60m"])
        )
        .group_by(Job.queue)
    )
    for name, ready, deferred, running, oldest, *counts in rows:
        snapshot = of(name)
        snapshot.ready, snapshot.deferred, snapshot.running = ready, deferred, running
        if oldest is not None:
            if oldest.tzinfo is None:  # SQLite's min() returns the stored text, not our type
                oldest = oldest.replace(tzinfo=now.tzinfo)
            snapshot.oldest_ready_age_s = round(max((now - oldest).total_seconds(), 0.0), 3)
        done, failed = counts[: len(windows)], counts[len(windows) :]
        snapshot.completed = dict(zip(WINDOWS_S, done, strict=False))
        snapshot.failed = dict(zip(WINDOWS_S, failed, strict=False))
        snapshot.throughput_per_s = round((done[-1] + failed[-1]) / THROUGHPUT_WINDOW_S, 3)

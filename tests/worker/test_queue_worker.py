"""The worker's take from the queue (worker/queue_worker.py): one script call marks as many due,
free ids as the worker has slots for, with arq's own in-progress marks; racing workers never
take the same id twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from shared.queue import create_redis
from shared.settings import Settings
from worker.queue_worker import QueueWorker

pytestmark = pytest.mark.redis


async def _noop(ctx: dict[str, Any]) -> None:  # the function arq would run
    return None


class RecordingWorker(QueueWorker):
    """Runs nothing: records what it was told to start, and holds each slot until released."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[tuple[str, int]] = []
        self.release = asyncio.Event()

    async def run_job(self, job_id: str, score: int) -> None:
        self.started.append((job_id, score))
        await self.release.wait()


def _worker(settings: Settings, queue: str, max_jobs: int) -> RecordingWorker:
    return RecordingWorker(
        functions=[_noop],
        queue_name=queue,
        paused_key=f"{queue}:paused",
        redis_pool=create_redis(settings.resolved_redis_url, patient=False),
        max_jobs=max_jobs,
        handle_signals=False,
        keep_result=0,
    )


async def test_takes_due_free_ids_in_order_up_to_its_free_slots(settings: Settings) -> None:
    queue = f"test:queue:{uuid.uuid4().hex}"
    redis = Redis.from_url(settings.resolved_redis_url)
    now = timestamp_ms()
    ids = {name: f"{name}-{uuid.uuid4().hex}" for name in "abcdef"}
    await redis.zadd(
        queue,
        {ids["a"]: now - 3, ids["b"]: now - 2, ids["c"]: now - 1, ids["e"]: now - 4},
    )
    await redis.zadd(queue, {ids["d"]: now + 60_000})  # deferred: not due yet
    await redis.set(in_progress_key_prefix + ids["e"], b"1", px=60_000)  # running elsewhere
    # ids["f"] is not in the queue any more (finished meanwhile).
    worker = _worker(settings, queue, max_jobs=2)
    try:
        read = [ids[name].encode() for name in "fedcba"]  # d, e, f first: all skipped
        await worker.start_jobs(read)
        assert worker.job_counter == 2
        await asyncio.sleep(0)
        assert worker.started == [(ids["c"], now - 1), (ids["b"], now - 2)]
        for name, marked in {"a": False, "b": True, "c": True, "d": False, "f": False}.items():
            assert await redis.exists(in_progress_key_prefix + ids[name]) == marked, name
        ttl_ms = await redis.pttl(in_progress_key_prefix + ids["b"])
        assert 0 < ttl_ms <= worker.in_progress_timeout_s * 1000
        # A mark holds the Redis time it was set at (for the reconciler's take-over).
        seconds, micros = await redis.time()
        marked_at = int(await redis.get(in_progress_key_prefix + ids["b"]) or 0)
        assert 0 <= seconds * 1000 + micros // 1000 - marked_at < 5_000
        # No free slot: nothing more is taken, nothing marked.
        await worker.start_jobs([ids["a"].encode()])
        assert not await redis.exists(in_progress_key_prefix + ids["a"])
        assert len(worker.started) == 2
        # A slot frees when a job ends; the next poll takes the rest.
        worker.release.set()
        while worker.job_counter:
            await asyncio.sleep(0.01)
        await worker.start_jobs(read)
        await asyncio.sleep(0)
        assert [job_id for job_id, _ in worker.started[2:]] == [ids["a"]]  # b and c stay marked
    finally:
        worker.release.set()
        await redis.delete(queue, *(in_progress_key_prefix + i for i in ids.values()))
        await worker.pool.aclose()
        await redis.aclose()


async def test_racing_workers_take_each_id_once(settings: Settings) -> None:
    queue = f"test:queue:{uuid.uuid4().hex}"
    redis = Redis.from_url(settings.resolved_redis_url)
    ids = [uuid.uuid4().hex for _ in range(120)]
    await redis.zadd(queue, {job_id: timestamp_ms() - 1 for job_id in ids})
    workers = [_worker(settings, queue, max_jobs=50) for _ in range(3)]
    try:
        read = [job_id.encode() for job_id in ids]  # every worker read the same ids
        await asyncio.gather(*(worker.start_jobs(read) for worker in workers))
        await asyncio.sleep(0)
        taken = [job_id for worker in workers for job_id, _ in worker.started]
        assert sorted(taken) == sorted(ids)  # each once: 120 ids for 150 slots
        assert sorted(worker.job_counter for worker in workers) == [20, 50, 50]
    finally:
        for worker in workers:
            worker.release.set()
            await worker.pool.aclose()
        await redis.delete(queue, *(in_progress_key_prefix + i for i in ids))
        await redis.aclose()

"""The enqueue script (shared/queue.py JobQueue): one call per queue and stream, every job
queued once and announced once, in the given order within its stream."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis

from shared.events import stream_key
from shared.queue import JobQueue, create_redis, deserialize, queue_key
from shared.settings import Settings


class Job:
    def __init__(self, owner_id: uuid.UUID, queue: str) -> None:
        self.id = uuid.uuid4()
        self.owner_id = owner_id
        self.kind = "render" if queue == "browser" else "http"
        self.queue = queue
        self.attempts = 0


async def queued_ids(redis: Redis, queue: str) -> set[str]:
    return {member.decode() for member in await redis.zrange(queue_key(queue), 0, -1)}


async def announced(redis: Redis, owner_id: uuid.UUID) -> list[tuple[str, str]]:
    entries = await redis.xrange(stream_key(owner_id))
    return [
        (event["job_id"], event["queue"])
        for event in (json.loads(fields[b"e"]) for _, fields in entries)
    ]


@pytest.mark.redis
async def test_interleaved_owners_and_queues_are_each_queued_and_announced_once(
    settings: Settings,
) -> None:
    owners = [uuid.uuid4(), uuid.uuid4()]
    # Two owners, two queues, interleaved; more jobs than one script call carries (500).
    jobs = [Job(owners[n % 2], "browser" if n % 3 == 0 else "default") for n in range(1203)]
    redis = create_redis(settings.resolved_redis_url, patient=False)
    plain = Redis.from_url(settings.resolved_redis_url)
    try:
        before = {q: await queued_ids(plain, q) for q in ("default", "browser")}
        await JobQueue(redis, 600).enqueue(jobs, "submitted")
        await JobQueue(redis, 600).enqueue(jobs[:10], "submitted")  # already queued: no-op

        for queue in ("default", "browser"):
            added = await queued_ids(plain, queue) - before[queue]
            assert added == {str(job.id) for job in jobs if job.queue == queue}
        payload = await plain.get(job_key_prefix + str(jobs[7].id))
        assert payload is not None
        assert deserialize(payload)["a"] == [str(jobs[7].id)]
        for owner in owners:
            mine = [job for job in jobs if job.owner_id == owner]
            events = await announced(plain, owner)
            assert sorted(events) == sorted((str(job.id), job.queue) for job in mine)
            for queue in ("default", "browser"):  # the given order, per queue
                assert [i for i, q in events if q == queue] == [
                    str(job.id) for job in mine if job.queue == queue
                ]
            assert 0 < await plain.pttl(stream_key(owner)) <= 1_200_000
    finally:
        await redis.aclose()
        await plain.aclose()


@pytest.mark.redis
async def test_the_reconciler_takes_over_only_marks_older_than_its_grace(
    settings: Settings,
) -> None:
    # Rows queued and due for a while; arq holds each id with an in-progress mark: stock arq's
    # (value 1), a dead worker's (set 30 s ago) and a live worker's that took it from a backlog
    # a moment ago and is about to claim the row.
    owner = uuid.uuid4()
    stock, dead, live = (Job(owner, "default") for _ in range(3))
    redis = create_redis(settings.resolved_redis_url, patient=False)
    plain = Redis.from_url(settings.resolved_redis_url)
    seconds, micros = await plain.time()
    now_ms = seconds * 1000 + micros // 1000
    marks = {stock: b"1", dead: str(now_ms - 30_000).encode(), live: str(now_ms).encode()}
    try:
        await JobQueue(redis, 600).enqueue([stock, dead, live], "submitted")
        # The worker's take removed nothing from the queue; the scores say "enqueued long ago".
        await plain.zadd(queue_key("default"), {str(job.id): 1 for job in marks})
        for job, value in marks.items():
            await plain.set(in_progress_key_prefix + str(job.id), value, px=600_000)

        await JobQueue(redis, 600).enqueue(list(marks), "recovered", take_over_after_s=10)

        for job in (stock, dead):  # cleared and ready again (a new score)
            assert not await plain.exists(in_progress_key_prefix + str(job.id))
            assert (await plain.zscore(queue_key("default"), str(job.id)) or 0) > 1
        assert await plain.get(in_progress_key_prefix + str(live.id)) == marks[live]
        assert await plain.zscore(queue_key("default"), str(live.id)) == 1
        # Taken over without a second announcement: the job entered the queue only once.
        assert [job_id for job_id, _ in await announced(plain, owner)] == [
            str(stock.id),
            str(dead.id),
            str(live.id),
        ]
    finally:
        keys = [in_progress_key_prefix + str(job.id) for job in marks]
        await plain.delete(*keys, stream_key(owner))
        await plain.zrem(queue_key("default"), *(str(job.id) for job in marks))
        await redis.aclose()
        await plain.aclose()


class RankedJob(Job):
    def __init__(self, priority: int, run_after: datetime | None = None) -> None:
        super().__init__(uuid.uuid4(), "default")
        self.priority = priority
        self.run_after = run_after or datetime.now(UTC)


@pytest.mark.redis
async def test_due_jobs_are_scored_by_priority_and_age_and_delayed_ones_by_their_time(
    settings: Settings,
) -> None:
    """arq takes a queue's due jobs lowest score first: higher priority first, FIFO within a
    priority, a job that waited the aging time ahead of every newer one, delayed ones at their
    time."""
    redis = create_redis(settings.resolved_redis_url, patient=False)
    plain = Redis.from_url(settings.resolved_redis_url)
    later = datetime.now(UTC) + timedelta(minutes=5)
    aging_s = 60.0
    try:
        queue = JobQueue(redis, 600, priority_aging_s=aging_s)
        old_low = RankedJob(0)
        await queue.enqueue([old_low], "submitted")
        lows = [RankedJob(0) for _ in range(3)]
        for low in lows:  # one call each: FIFO is by the time of each call
            await queue.enqueue([low], "submitted")
        high, middle, delayed = RankedJob(9), RankedJob(5), RankedJob(9, later)
        await queue.enqueue([middle, high, delayed], "submitted")
        score = {
            job: float(await plain.zscore(queue_key("default"), str(job.id)) or 0)
            for job in [old_low, *lows, high, middle, delayed]
        }
    finally:
        await redis.aclose()
        await plain.aclose()

    assert score[high] < score[middle] < score[old_low] <= score[lows[0]]
    assert [score[low] for low in lows] == sorted(score[low] for low in lows)
    assert score[old_low] - score[high] == pytest.approx(aging_s * 1000, abs=1000)
    assert score[delayed] == pytest.approx(later.timestamp() * 1000, abs=1)

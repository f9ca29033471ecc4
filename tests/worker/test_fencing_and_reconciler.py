"""What keeps a job exactly-once-recorded through crashes: claim fencing, the reconciler
(lost enqueues, orphaned jobs) and idempotent delivery."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import JobLike
from shared.liveness import liveness_key
from shared.models import AttemptOutcome, Job, JobAttempt, JobStatus, utcnow
from shared.queue import JobQueue, create_redis, queue_key
from shared.repositories.execution import (
    Outcome,
    claim_job,
    find_orphans,
    record_outcome,
    release_orphan,
    stale_claims,
)
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import TargetServer, wait_for_job
from tests.worker.support import (
    Owner,
    attempts_of,
    eventually,
    get_job,
    insert_http_job,
    make_owner,
)
from worker.lifecycle import Reconciler
from worker.state import WorkerState

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def owner(sessionmaker: Sessions) -> Owner:
    return await make_owner(sessionmaker)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    client = create_redis(settings.resolved_redis_url, patient=False)
    yield client
    await client.aclose(close_connection_pool=True)


async def load(sessionmaker: Sessions, job_id: uuid.UUID) -> tuple[Job, list[JobAttempt]]:
    async with sessionmaker() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id))
        rows = await session.scalars(
            select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.fence)
        )
        attempts = list(rows.all())
    assert job is not None
    return job, attempts


async def expire_lease(sessionmaker: Sessions, job_id: uuid.UUID) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=60))
        )


async def make_orphan(sessionmaker: Sessions, job_id: uuid.UUID, worker_id: str) -> None:
    """Leave the row as a worker that died mid-attempt would: running, lease run out."""
    now = utcnow()
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=JobStatus.RUNNING,
                attempts=1,
                fence=1,
                worker_id=worker_id,
                started_at=now - timedelta(seconds=120),
                lease_expires_at=now - timedelta(seconds=60),
            )
        )
        session.add(
            JobAttempt(
                job_id=job_id,
                fence=1,
                number=1,
                worker_id=worker_id,
                started_at=now - timedelta(seconds=120),
            )
        )


# --- (a) fencing, at the repository level -------------------------------------------------


async def test_a_stale_claim_can_never_overwrite_a_newer_one(
    sessionmaker: Sessions, owner: Owner
) -> None:
    job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/never-called")
    async with sessionmaker.begin() as session:
        first = await claim_job(session, job.id, "worker-a", 30)
    assert first is not None
    async with sessionmaker.begin() as session:
        assert await claim_job(session, job.id, "worker-x", 30) is None  # running: not claimable

    # worker-a stalls past its lease; the reconciler requeues the job; worker-b claims it.
    await expire_lease(sessionmaker, job.id)
    async with sessionmaker() as session:
        assert (job.id, first.fence, "worker-a") in await find_orphans(session, 1000)
    async with sessionmaker.begin() as session:
        released = await release_orphan(session, job.id, first.fence)
        assert released is not None
        assert released.requeued
        assert released.job.queue == "default"
    async with sessionmaker.begin() as session:
        assert await release_orphan(session, job.id, first.fence) is None  # idempotent
        second = await claim_job(session, job.id, "worker-b", 30)
    assert second is not None
    assert second.fence > first.fence
    assert second.job.attempts == 2

    # worker-a wakes up while worker-b runs: its writes are refused, and its cancel watch
    # learns the job is no longer its own.
    late = Outcome(
        status=JobStatus.SUCCEEDED, attempt_outcome=AttemptOutcome.SUCCEEDED, result={"by": "a"}
    )
    async with sessionmaker.begin() as session:
        assert await record_outcome(session, job.id, first.fence, late) is False
    async with sessionmaker() as session:
        assert await stale_claims(session, [(job.id, first.fence)]) == {job.id}
        assert await stale_claims(session, [(job.id, second.fence)]) == set()
    row, _ = await load(sessionmaker, job.id)
    assert (row.status, row.worker_id, row.result) == (JobStatus.RUNNING, "worker-b", None)

    done = Outcome(
        status=JobStatus.SUCCEEDED, attempt_outcome=AttemptOutcome.SUCCEEDED, result={"by": "b"}
    )
    failed = Outcome(
        status=JobStatus.FAILED,
        attempt_outcome=AttemptOutcome.FAILED,
        error={"code": "http_4xx", "message": "late", "retryable": False},
    )
    async with sessionmaker.begin() as session:
        assert await record_outcome(session, job.id, second.fence, done) is True
    async with sessionmaker.begin() as session:
        assert await record_outcome(session, job.id, first.fence, late) is False
        assert await record_outcome(session, job.id, first.fence, failed) is False
        assert await record_outcome(session, job.id, second.fence, failed) is False  # once only

    row, attempts = await load(sessionmaker, job.id)
    assert row.status == JobStatus.SUCCEEDED
    assert row.result == {"by": "b"}
    assert row.error is None
    assert row.attempts == 2
    assert [(a.fence, a.worker_id, a.outcome, a.error_code) for a in attempts] == [
        (first.fence, "worker-a", AttemptOutcome.LOST, "worker_lost"),
        (second.fence, "worker-b", AttemptOutcome.SUCCEEDED, None),
    ]


# --- (b) a lost enqueue ------------------------------------------------------------------


async def test_a_job_whose_enqueue_was_lost_still_runs(
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    owner: Owner,
    redis: ArqRedis,
    target: TargetServer,
    run_worker: RunWorker,
    settings: Settings,
) -> None:
    job = await insert_http_job(sessionmaker, owner, target.url("/ok"))
    assert await redis.zscore(queue_key("default"), str(job.id)) is None  # never enqueued

    async with run_worker():
        done = await wait_for_job(
            client, owner.auth, str(job.id), timeout_s=settings.enqueue_grace_s + 3
        )

    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert target.hits["/ok"] == 1


# --- (c) an orphan: its worker died mid-attempt ------------------------------------------


async def test_an_orphaned_job_is_requeued_and_then_succeeds(
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    owner: Owner,
    redis: ArqRedis,
    target: TargetServer,
    run_worker: RunWorker,
) -> None:
    job = await insert_http_job(sessionmaker, owner, target.url("/ok"), max_attempts=3)
    dead = f"dead-host:1:{uuid.uuid4().hex[:6]}"
    await make_orphan(sessionmaker, job.id, dead)
    assert not await redis.exists(liveness_key(dead))

    async with run_worker():
        done = await wait_for_job(client, owner.auth, str(job.id), timeout_s=10)

    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    attempts = await attempts_of(client, owner.auth, str(job.id))
    assert [(a["worker_id"], a["outcome"], a["error_code"]) for a in attempts] == [
        (dead, "lost", "worker_lost"),
        (attempts[1]["worker_id"], "succeeded", None),
    ]
    assert attempts[1]["worker_id"] != dead
    assert target.hits["/ok"] == 1


async def test_an_orphan_out_of_attempts_fails_with_worker_lost(
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    owner: Owner,
    target: TargetServer,
    run_worker: RunWorker,
) -> None:
    job = await insert_http_job(sessionmaker, owner, target.url("/ok"), max_attempts=1)
    await make_orphan(sessionmaker, job.id, f"dead-host:2:{uuid.uuid4().hex[:6]}")

    async with run_worker():
        done = await wait_for_job(client, owner.auth, str(job.id), timeout_s=10)

    assert done["status"] == "failed", done
    assert done["error"]["code"] == "worker_lost"
    assert done["attempts"] == 1
    assert done["finished_at"] is not None
    attempts = await attempts_of(client, owner.auth, str(job.id))
    assert [(a["outcome"], a["error_code"]) for a in attempts] == [("lost", "worker_lost")]
    assert target.hits == {}


async def test_the_reconciler_leaves_a_live_workers_job_alone(
    sessionmaker: Sessions, owner: Owner, redis: ArqRedis, settings: Settings
) -> None:
    # A queue no worker reads: the requeued id must not be run by a later test's worker.
    queue = "reconciler-test"
    job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/x", queue=queue)
    slow_worker = f"busy-host:3:{uuid.uuid4().hex[:6]}"
    await make_orphan(sessionmaker, job.id, slow_worker)
    await redis.set(liveness_key(slow_worker), "{}", px=60_000)

    state = await WorkerState.create(settings, "default")
    try:
        reconciler = Reconciler(state)
        await reconciler.run_once()
        row, attempts = await load(sessionmaker, job.id)
        # Alive (a database blip kept it from renewing): let it finish.
        assert (row.status, row.fence, row.worker_id) == (JobStatus.RUNNING, 1, slow_worker)

        await redis.delete(liveness_key(slow_worker))
        await reconciler.run_once()
        row, attempts = await load(sessionmaker, job.id)
        assert (row.status, row.worker_id, row.lease_expires_at) == (JobStatus.QUEUED, None, None)
        assert row.attempts == 1
        assert [(a.outcome, a.error_code) for a in attempts] == [
            (AttemptOutcome.LOST, "worker_lost")
        ]
        assert await redis.zscore(queue_key(queue), str(job.id)) is not None
    finally:
        await state.close()
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job.id).values(status=JobStatus.CANCELLED)
            )
        await redis.zrem(queue_key(queue), str(job.id))


async def enqueue(redis: ArqRedis, job: JobLike) -> None:
    await JobQueue(redis, 600).enqueue([job], "submitted")


# --- (d) duplicate deliveries ------------------------------------------------------------


async def test_duplicate_enqueues_run_the_job_once(
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    owner: Owner,
    redis: ArqRedis,
    target: TargetServer,
    run_worker: RunWorker,
) -> None:
    job = await insert_http_job(sessionmaker, owner, target.url("/slow?s=0.5"))
    job_id = str(job.id)
    await enqueue(redis, job)
    await enqueue(redis, job)
    assert await redis.zscore(queue_key("default"), job_id) is not None

    async def delivered() -> bool:
        return await redis.zscore(queue_key("default"), job_id) is None

    async with run_worker():
        await wait_for_job(client, owner.auth, job_id, {"running"}, timeout_s=10)
        await enqueue(redis, job)  # while it runs
        done = await wait_for_job(client, owner.auth, job_id)
        await eventually(delivered, 5, "the worker took the running-time duplicate")
        await enqueue(redis, job)  # after it finished: a real second delivery
        await eventually(delivered, 5, "the worker took the late duplicate")
        after = await get_job(client, owner.auth, job_id)

    assert done["status"] == "succeeded", done
    assert after == done  # the late delivery changed nothing
    assert done["attempts"] == 1
    assert target.hits["/slow"] == 1
    attempts = await attempts_of(client, owner.auth, job_id)
    assert [a["outcome"] for a in attempts] == ["succeeded"]


async def test_a_job_a_dead_worker_took_from_arq_but_never_claimed_runs(
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    owner: Owner,
    redis: ArqRedis,
    target: TargetServer,
    run_worker: RunWorker,
) -> None:
    # A worker popped the id (arq's in-progress mark, which lasts the job timeout) and died
    # before its claim: the row is still queued, and arq alone would not run it for minutes.
    job = await insert_http_job(sessionmaker, owner, target.url("/ok"))
    job_id = str(job.id)
    await enqueue(redis, job)
    await redis.set(in_progress_key_prefix + job_id, b"1", px=600_000)
    async with sessionmaker.begin() as session:  # due for longer than the enqueue grace
        await session.execute(
            update(Job).where(Job.id == job.id).values(run_after=utcnow() - timedelta(seconds=5))
        )
    async with run_worker():
        done = await wait_for_job(client, owner.auth, job_id, timeout_s=15)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert target.hits["/ok"] == 1

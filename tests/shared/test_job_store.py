"""The job store's parity suite: every implementation (SqlJobStore on SQLite, PgJobStore on
PostgreSQL, and SqlJobStore on PostgreSQL, the portable path) passes the same tests, and the
rows they write are the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from migrations import apply as migrate
from shared.db import create_engine, create_sessionmaker
from shared.models import (
    AttemptOutcome,
    Job,
    JobAttempt,
    JobStatus,
    ResultCache,
    WebhookDelivery,
    utcnow,
)
from shared.repositories.execution import Outcome
from shared.repositories.job_store import JobStore, open_job_store
from shared.repositories.job_store_pg import PgJobStore
from shared.repositories.job_store_sql import SqlJobStore
from shared.repositories.result_cache import delete_old_results
from shared.settings import Settings
from tests.conftest import TEST_DATABASE_URL
from tests.worker.support import Owner, make_owner

Sessions = async_sessionmaker[AsyncSession]
IMPLEMENTATIONS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
IMPLEMENTATIONS.append(pytest.param("postgres-portable", marks=pytest.mark.postgres))


@dataclass
class Subject:
    store: JobStore
    sessionmaker: Sessions
    owner: Owner


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> tuple[str, Settings]:
    kind: str = request.param
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        migrate.upgrade(url)
        settings = settings.model_copy(update={"database_url": url, "data_dir": tmp_path})
    return kind, settings


@pytest.fixture
async def subject(implementation: tuple[str, Settings]) -> AsyncIterator[Subject]:
    kind, settings = implementation
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    store: JobStore
    if kind == "postgres-portable":
        store = SqlJobStore(sessionmaker)
    else:
        store = await open_job_store(settings, engine, sessionmaker, pg_connections=2)
        assert isinstance(store, PgJobStore) == (kind == "postgres"), store
    owner = await make_owner(sessionmaker)
    try:
        yield Subject(store, sessionmaker, owner)
    finally:
        await settle(sessionmaker, owner)
        await store.close()
        await engine.dispose()


async def settle(sessionmaker: Sessions, owner: Owner) -> None:
    """Nothing this suite wrote may be run by a later test's worker or reconciler."""
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.owner_id == owner.id, Job.status.in_(["queued", "running"]))
            .values(status=JobStatus.CANCELLED, lease_expires_at=None)
        )


def new_rows(owner: Owner, n: int = 2, **extra: Any) -> list[dict[str, Any]]:
    base = {"owner_id": owner.id, "agent_id": owner.agent_id, "max_attempts": 2, **extra}
    kinds = [("http", "default", 10.0), ("render", "browser", 2.5)]
    return [
        {
            **base,
            "kind": kinds[i % 2][0],
            "queue": kinds[i % 2][1],
            "timeout_s": kinds[i % 2][2],
            "input": {"url": f"http://127.0.0.1:9/{i}", "json": {"n": [i, None, "é", 1.5]}},
        }
        for i in range(n)
    ]


async def row(sessionmaker: Sessions, job_id: uuid.UUID) -> tuple[Job, list[JobAttempt]]:
    async with sessionmaker() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id))
        attempts = await session.scalars(
            select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.fence)
        )
        assert job is not None
        return job, list(attempts.all())


RETRY = Outcome(
    status=JobStatus.QUEUED,
    attempt_outcome=AttemptOutcome.RETRYING,
    error={"code": "http_503", "message": "busy", "retryable": True},
)
DONE = Outcome(JobStatus.SUCCEEDED, AttemptOutcome.SUCCEEDED, result={"ok": [1, "é"]})


async def test_insert_writes_every_row_and_returns_them_in_order(subject: Subject) -> None:
    jobs = await subject.store.insert(new_rows(subject.owner, 3))
    assert [job.kind for job in jobs] == ["http", "render", "http"]
    for new in jobs:
        written, attempts = await row(subject.sessionmaker, new.id)
        assert attempts == []
        for column in Job.__table__.c:
            assert getattr(written, column.key) == getattr(new, column.key, None), column.key


async def test_values_that_are_equal_but_not_identical_stay_distinct(subject: Subject) -> None:
    # 1, 1.0 and True are equal in Python and three different JSON values.
    base = new_rows(subject.owner, 1)[0]
    batch = [{**base, "input": {"url": "http://127.0.0.1:9/a", "json": n}} for n in (1, 1.0, True)]
    jobs = await subject.store.insert(batch)
    types = [type((await row(subject.sessionmaker, j.id))[0].input["json"]) for j in jobs]
    assert types == [int, float, bool]


async def test_claims_are_fenced_and_outcomes_of_stale_claims_are_refused(
    subject: Subject,
) -> None:
    store = subject.store
    (job,) = await store.insert(new_rows(subject.owner, 1))
    first = await store.claim(job.id, "worker-a", 30)
    assert first is not None
    assert first.agent.id == subject.owner.agent_id
    assert (first.job.status, first.job.attempts, first.fence) == ("running", 1, 1)
    assert await store.claim(job.id, "worker-x", 30) is None  # already running
    assert await store.record_outcome(first, RETRY)
    second = await store.claim(job.id, "worker-b", 30)
    assert second is not None
    assert second.fence == first.fence + 1
    assert not await store.record_outcome(first, DONE)  # fenced out
    assert await store.record_outcome(second, DONE)
    assert not await store.record_outcome(second, DONE)  # not running any more
    written, attempts = await row(subject.sessionmaker, job.id)
    assert (written.status, written.result, written.attempts, written.worker_id) == (
        "succeeded",
        {"ok": [1, "é"]},
        2,
        None,
    )
    assert written.finished_at is not None
    assert [(a.fence, a.worker_id, a.outcome, a.error_code) for a in attempts] == [
        (1, "worker-a", "retrying", "http_503"),
        (2, "worker-b", "succeeded", None),
    ]


async def test_a_parked_job_runs_on_unheld_and_is_no_orphan(subject: Subject) -> None:
    store = subject.store
    (job,) = await store.insert(new_rows(subject.owner, 1))
    claim = await store.claim(job.id, "worker-a", 0.001)
    assert claim is not None
    assert await store.park(claim, {"pages": {"discovered": 1}})
    assert not await store.park(claim, {})  # once
    written, attempts = await row(subject.sessionmaker, job.id)
    assert (written.status, written.worker_id, written.lease_expires_at) == ("running", None, None)
    assert written.result == {"pages": {"discovered": 1}}
    assert written.finished_at is None
    assert [(a.outcome, a.finished_at is not None) for a in attempts] == [("succeeded", True)]
    orphans = await store.find_orphans(1000)
    assert job.id not in {job_id for job_id, _, _ in orphans}
    assert await store.stale_claims([(job.id, claim.fence)]) == set()


async def test_a_refunded_attempt_and_a_deferral_keep_the_budget(subject: Subject) -> None:
    store = subject.store
    (job,) = await store.insert(new_rows(subject.owner, 1))
    claim = await store.claim(job.id, "worker-a", 30)
    assert claim is not None
    later = utcnow() + timedelta(seconds=60)
    deferred = Outcome(
        JobStatus.QUEUED, AttemptOutcome.DEFERRED, run_after=later, refund_attempt=True
    )
    assert await store.record_outcome(claim, deferred)
    written, attempts = await row(subject.sessionmaker, job.id)
    assert (written.status, written.attempts, written.finished_at) == ("queued", 0, None)
    assert abs((written.run_after - later).total_seconds()) < 0.01
    assert [a.outcome for a in attempts] == ["deferred"]


async def test_an_end_with_a_webhook_queues_its_delivery_in_the_same_write(
    subject: Subject,
) -> None:
    store = subject.store
    rows = new_rows(subject.owner, 1, webhook_url="https://hooks.example/x")
    (job,) = await store.insert(rows)
    claim = await store.claim(job.id, "worker-a", 30)
    assert claim is not None
    assert await store.record_outcome(claim, DONE)
    async with subject.sessionmaker() as session:
        deliveries = list(
            await session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job.id))
        )
    assert [(d.url, d.event, d.status) for d in deliveries] == [
        ("https://hooks.example/x", "job.succeeded", "pending")
    ]


async def test_leases_renew_and_cancels_are_seen(subject: Subject) -> None:
    store = subject.store
    a, b = await store.insert(new_rows(subject.owner, 2))
    claim_a, claim_b = await store.claim(a.id, "w", 1), await store.claim(b.id, "w", 1)
    assert claim_a is not None
    assert claim_b is not None
    before = (await row(subject.sessionmaker, a.id))[0].lease_expires_at
    await store.renew_leases("w", 60, [a.id])
    after_a = (await row(subject.sessionmaker, a.id))[0].lease_expires_at
    after_b = (await row(subject.sessionmaker, b.id))[0].lease_expires_at
    assert before is not None
    assert after_a is not None
    assert after_b is not None
    assert after_a - before > timedelta(seconds=30)
    assert after_b < after_a  # not named: not renewed
    async with subject.sessionmaker.begin() as session:  # the user cancels b
        await session.execute(update(Job).where(Job.id == b.id).values(status=JobStatus.CANCELLED))
    assert await store.stale_claims([(a.id, claim_a.fence), (b.id, claim_b.fence)]) == {b.id}
    assert await store.stale_claims([]) == set()
    await store.record_cancelled(claim_b)
    attempts = (await row(subject.sessionmaker, b.id))[1]
    assert [(x.outcome, x.error_code) for x in attempts] == [("cancelled", "cancelled")]


async def test_the_reconciler_finds_orphans_and_unenqueued_jobs(subject: Subject) -> None:
    store = subject.store
    orphan, last_try, queued = await store.insert(new_rows(subject.owner, 3))
    claims = [await store.claim(job.id, "dead", 30) for job in (orphan, last_try)]
    assert all(claims)
    async with subject.sessionmaker.begin() as session:
        past = utcnow() - timedelta(seconds=5)
        await session.execute(
            update(Job).where(Job.id.in_([orphan.id, last_try.id])).values(lease_expires_at=past)
        )
        await session.execute(update(Job).where(Job.id == last_try.id).values(max_attempts=1))
        await session.execute(update(Job).where(Job.id == queued.id).values(run_after=past))
    found = {job_id: (fence, worker) for job_id, fence, worker in await store.find_orphans(100)}
    assert found[orphan.id] == (1, "dead")
    assert found[last_try.id] == (1, "dead")
    cutoff = utcnow()  # the requeued orphan is due from its release on, after this
    requeued = await store.release_orphan(orphan.id, 1)
    failed = await store.release_orphan(last_try.id, 1)
    assert requeued is not None
    assert requeued.requeued
    assert failed is not None
    assert not failed.requeued
    assert await store.release_orphan(orphan.id, 1) is None  # moved on
    error = (await row(subject.sessionmaker, last_try.id))[0].error
    assert error is not None
    assert error["code"] == "worker_lost"
    due = await store.find_unenqueued(cutoff, None, 1000)
    assert queued.id in {job.id for job in due}
    assert orphan.id not in {job.id for job in due}  # requeued with run_after now


@pytest.mark.postgres
async def test_the_result_cache_keeps_the_newest_result_per_owner_and_key(
    subject: Subject,
) -> None:
    store, owner = subject.store, subject.owner
    other = await make_owner(subject.sessionmaker)
    before = utcnow() - timedelta(seconds=1)
    assert await store.cached_result(owner.id, "k" * 64, before) is None
    first = await store.cache_result(owner.id, "k" * 64, "http://a.test/", {"n": 1}, None)
    job_id = uuid.uuid4()
    second = await store.cache_result(owner.id, "k" * 64, "http://a.test/", {"n": [2, "é"]}, job_id)
    hit = await store.cached_result(owner.id, "k" * 64, before)
    assert hit is not None
    assert (hit.result, hit.job_id, hit.created_at) == ({"n": [2, "é"]}, job_id, second)
    assert first <= second
    assert await store.cached_result(owner.id, "k" * 64, second) is None  # not younger
    assert await store.cached_result(other.id, "k" * 64, before) is None  # another owner's
    assert await store.cached_result(owner.id, "j" * 64, before) is None
    async with subject.sessionmaker() as session:
        rows = await session.scalars(select(ResultCache).where(ResultCache.owner_id == owner.id))
        assert len(rows.all()) == 1  # the older result was replaced
    async with subject.sessionmaker.begin() as session:
        assert await delete_old_results(session, utcnow() + timedelta(seconds=1), 500) >= 1
    assert await store.cached_result(owner.id, "k" * 64, before) is None


async def test_both_postgresql_paths_write_the_same_rows(settings: Settings) -> None:
    assert TEST_DATABASE_URL
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    owner = await make_owner(sessionmaker)
    direct = await open_job_store(settings, engine, sessionmaker, pg_connections=1)
    portable = SqlJobStore(sessionmaker)
    try:
        written = []
        for store in (direct, portable):
            (job,) = await store.insert(new_rows(owner, 1))
            claim = await store.claim(job.id, "w", 30)
            assert claim is not None
            assert await store.record_outcome(claim, RETRY)
            again = await store.claim(job.id, "w", 30)
            assert again is not None
            assert await store.record_outcome(again, DONE)
            written.append(await row(sessionmaker, job.id))
    finally:
        await settle(sessionmaker, owner)
        await direct.close()
        await engine.dispose()

    def comparable(found: tuple[Job, list[JobAttempt]]) -> Any:
        job, attempts = found
        skip = {"id", "created_at", "run_after", "started_at", "finished_at"}
        columns = {c.key: getattr(job, c.key) for c in Job.__table__.c if c.key not in skip}
        return columns, [(a.fence, a.number, a.outcome, a.error_code) for a in attempts]

    assert comparable(written[0]) == comparable(written[1])

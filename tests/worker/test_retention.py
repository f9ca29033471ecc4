"""Retention: jobs that ended before the cutoff go with their attempts, artifacts and webhook
deliveries; live jobs, recent ones and ones with a pending delivery stay; schedule runs go
with their jobs. Off unless configured; a real worker runs it as a background loop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import (
    Artifact,
    DeliveryStatus,
    Job,
    JobAttempt,
    JobStatus,
    Schedule,
    ScheduleRun,
    ScheduleRunStatus,
    WebhookDelivery,
    utcnow,
)
from shared.repositories.artifact import insert_artifact
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.worker.support import Owner, eventually, insert_http_job, make_owner, when
from worker.retention import Pruner
from worker.state import WorkerState

Sessions = async_sessionmaker[AsyncSession]
RETENTION_S = 2 * 3600.0
LONG_AGO = timedelta(hours=3)  # past the retention
LATELY = timedelta(minutes=30)  # within it


@pytest.fixture
async def owner(sessionmaker: Sessions) -> AsyncIterator[Owner]:
    value = await make_owner(sessionmaker)
    yield value
    # The live rows made here never had a worker: they must not run in a later test's.
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.owner_id == value.id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(status=JobStatus.CANCELLED, finished_at=utcnow())
        )


@pytest.fixture
async def state(settings: Settings) -> AsyncIterator[WorkerState]:
    value = await WorkerState.create(
        settings.model_copy(update={"job_retention_s": RETENTION_S}), "default"
    )
    try:
        yield value
    finally:
        await value.close()


async def ended_job(
    sessionmaker: Sessions,
    owner: Owner,
    status: JobStatus,
    ago: timedelta,
    *,
    delivery: DeliveryStatus | None = None,
    artifact: bool = False,
    schedule_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A job that ended (or, for a live status, was created) `ago`, with an attempt and,
    if asked, an artifact and a webhook delivery in the given state."""
    job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/x")
    at = utcnow() - ago
    ended = status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                status=status,
                created_at=at - timedelta(seconds=5),
                finished_at=at if ended else None,
                schedule_id=schedule_id,
                schedule_instant=at if schedule_id else None,
            )
        )
        session.add(JobAttempt(job_id=job.id, fence=1, number=1, worker_id="w", started_at=at))
        if artifact:
            await insert_artifact(
                session,
                owner_id=owner.id,
                job_id=job.id,
                kind="screenshot",
                content_type="image/png",
                data=b"\x89PNG not really",
            )
        if delivery is not None:
            session.add(
                WebhookDelivery(
                    owner_id=owner.id,
                    job_id=job.id,
                    agent_id=owner.agent_id,
                    event="job.succeeded",
                    source="job",
                    url="http://127.0.0.1:9/hook",
                    payload={},
                    status=delivery,
                )
            )
    return job.id


JOB_COLUMNS = {
    "attempts": JobAttempt.job_id,
    "artifacts": Artifact.job_id,
    "deliveries": WebhookDelivery.job_id,
}


async def count(sessionmaker: Sessions, what: str, job_id: uuid.UUID) -> int:
    """How many rows of `what` (a JOB_COLUMNS key) point at the job."""
    async with sessionmaker() as session:
        value = await session.scalar(select(func.count()).where(JOB_COLUMNS[what] == job_id))
    return int(value or 0)


async def exists(sessionmaker: Sessions, job_id: uuid.UUID) -> bool:
    async with sessionmaker() as session:
        return await session.get(Job, job_id) is not None


async def test_jobs_ended_before_the_cutoff_go_with_everything_that_hangs_off_them(
    sessionmaker: Sessions, owner: Owner, state: WorkerState, client: httpx.AsyncClient
) -> None:
    gone = [
        await ended_job(
            sessionmaker,
            owner,
            JobStatus.SUCCEEDED,
            LONG_AGO,
            artifact=True,
            delivery=DeliveryStatus.DELIVERED,
        ),
        await ended_job(sessionmaker, owner, JobStatus.FAILED, LONG_AGO),
        await ended_job(
            sessionmaker, owner, JobStatus.CANCELLED, LONG_AGO, delivery=DeliveryStatus.FAILED
        ),
    ]
    kept = [
        await ended_job(sessionmaker, owner, JobStatus.SUCCEEDED, LATELY),
        await ended_job(sessionmaker, owner, JobStatus.QUEUED, LONG_AGO),
        await ended_job(sessionmaker, owner, JobStatus.RUNNING, LONG_AGO),
        # Its announcement is still being retried: the job stays until it settles.
        await ended_job(
            sessionmaker, owner, JobStatus.FAILED, LONG_AGO, delivery=DeliveryStatus.PENDING
        ),
    ]
    async with sessionmaker() as session:
        artifact_id = await session.scalar(select(Artifact.id).where(Artifact.job_id == gone[0]))
    assert artifact_id is not None
    assert (await client.get(f"/v1/artifacts/{artifact_id}", headers=owner.auth)).status_code == 200

    pruned = await Pruner(state, batch=2).run_once()  # several batches

    assert pruned.jobs >= len(gone)
    for job_id in gone:
        assert not await exists(sessionmaker, job_id)
        for what in JOB_COLUMNS:
            assert await count(sessionmaker, what, job_id) == 0, what
        response = await client.get(f"/v1/jobs/{job_id}", headers=owner.auth)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    for job_id in kept:
        assert await exists(sessionmaker, job_id)
        assert await count(sessionmaker, "attempts", job_id) == 1
    assert (await client.get(f"/v1/artifacts/{artifact_id}", headers=owner.auth)).status_code == 404

    # Once the pending delivery settles, its job goes on the next pass.
    async with sessionmaker.begin() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.job_id == kept[-1])
            .values(status=DeliveryStatus.DELIVERED)
        )
    assert (await Pruner(state).run_once()).jobs >= 1
    assert not await exists(sessionmaker, kept[-1])
    assert all([await exists(sessionmaker, job_id) for job_id in kept[:-1]])


async def test_schedule_runs_go_with_their_jobs_and_recent_ones_stay(
    sessionmaker: Sessions, owner: Owner, state: WorkerState, client: httpx.AsyncClient
) -> None:
    now = utcnow()
    schedule = Schedule(
        owner_id=owner.id,
        cron="0 * * * *",
        timezone="UTC",
        job={"kind": "http", "input": {"url": "http://127.0.0.1:9/x"}},
        enabled=False,
        next_fire_at=now + timedelta(hours=1),
    )
    async with sessionmaker.begin() as session:
        session.add(schedule)
    old_done = await ended_job(
        sessionmaker, owner, JobStatus.SUCCEEDED, LONG_AGO, schedule_id=schedule.id
    )
    old_live = await ended_job(
        sessionmaker,
        owner,
        JobStatus.QUEUED,
        LONG_AGO + timedelta(hours=1),
        schedule_id=schedule.id,
    )

    def run(instant: datetime, job_id: uuid.UUID | None) -> ScheduleRun:
        status = ScheduleRunStatus.FIRED if job_id else ScheduleRunStatus.SKIPPED
        return ScheduleRun(schedule_id=schedule.id, instant=instant, status=status, job_id=job_id)

    async with sessionmaker.begin() as session:
        session.add_all(
            [
                run(now - LONG_AGO, old_done),  # goes with its job
                run(now - LONG_AGO - timedelta(hours=1), old_live),  # its job is still queued
                run(now - LONG_AGO - timedelta(hours=2), None),  # skipped, long ago: goes
                run(now - LATELY, None),  # skipped lately: stays
            ]
        )

    await Pruner(state).run_once()

    response = await client.get(f"/v1/schedules/{schedule.id}/runs", headers=owner.auth)
    assert response.status_code == 200, response.text
    left = [
        (when(run["instant"]), run["job_id"], run["job_status"]) for run in response.json()["items"]
    ]
    assert left == [
        (now - LATELY, None, None),  # skipped lately: stays
        (now - LONG_AGO - timedelta(hours=1), str(old_live), "queued"),  # its job is live
    ]
    assert not await exists(sessionmaker, old_done)


async def test_retention_is_off_unless_configured(
    sessionmaker: Sessions, owner: Owner, settings: Settings
) -> None:
    assert settings.job_retention_s is None
    job_id = await ended_job(sessionmaker, owner, JobStatus.SUCCEEDED, timedelta(days=400))
    state = await WorkerState.create(settings, "default")
    try:
        assert (await Pruner(state).run_once()).jobs == 0
    finally:
        await state.close()
    assert await exists(sessionmaker, job_id)


def test_a_retention_under_an_hour_is_refused_and_empty_means_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="job_retention_s"):
        Settings(job_retention_s=600)
    monkeypatch.setenv("OUTRIDER_JOB_RETENTION_S", "")
    assert Settings().job_retention_s is None
    monkeypatch.setenv("OUTRIDER_JOB_RETENTION_S", "86400")
    assert Settings().job_retention_s == 86400


async def test_a_running_worker_prunes_in_the_background(
    sessionmaker: Sessions, owner: Owner, run_worker: RunWorker
) -> None:
    job_id = await ended_job(sessionmaker, owner, JobStatus.SUCCEEDED, LONG_AGO)

    async def gone() -> bool:
        return not await exists(sessionmaker, job_id)

    async with run_worker(job_retention_s=RETENTION_S, retention_interval_s=0.2):
        await eventually(gone, 10, "the worker's retention loop deletes the old job")

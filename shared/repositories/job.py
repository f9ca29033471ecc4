"""Jobs as the API sees them: insert, read, cancel, retry. Owner-scoped throughout."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import InvalidState, NotFound
from shared.ids import new_id
from shared.models import Job, JobAttempt, JobStatus, utcnow
from shared.repositories.frontier import lock_crawl
from shared.repositories.webhooks import add_deliveries, webhook_urls


@dataclass(slots=True)
class NewJob:
    """A job as `insert_jobs` wrote it: the columns of a Job row, without the ORM's
    instrumentation (building thousands of ORM instances costs more than inserting them)."""

    id: uuid.UUID
    owner_id: uuid.UUID
    agent_id: uuid.UUID
    kind: str
    queue: str
    input: dict[str, Any]
    max_attempts: int
    timeout_s: float
    created_at: datetime
    run_after: datetime
    priority: int = 5
    status: str = JobStatus.QUEUED
    attempts: int = 0
    fence: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    schedule_id: uuid.UUID | None = None
    schedule_instant: datetime | None = None
    webhook_url: str | None = None
    parent_id: uuid.UUID | None = None


def new_job_values(
    rows: Sequence[dict[str, Any]], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every column of new queued jobs: the given ones, a fresh id (unless given), and the
    queued defaults."""
    now = now or utcnow()
    return [
        {
            "id": row["id"] if "id" in row else new_id(),
            "status": JobStatus.QUEUED,
            "attempts": 0,
            "fence": 0,
            "created_at": now,
            "run_after": now,
            **row,
        }
        for row in rows
    ]


async def insert_jobs(
    session: AsyncSession, rows: Sequence[dict[str, Any]], *, now: datetime | None = None
) -> list[NewJob]:
    """Insert queued jobs (one round trip for the lot) and return them in order; `now`
    (default: this host's clock) is their creation time.

    A Core insert, not the unit of work: every column is known here, and the ORM's flush costs
    more than the database does on the submit path.
    """
    values = new_job_values(rows, now)
    await session.execute(insert(cast(Table, Job.__table__)), values)
    return [NewJob(**value) for value in values]


async def find_by_idempotency_key(
    session: AsyncSession, owner_id: uuid.UUID, key: str
) -> Job | None:
    """The job an earlier request with this Idempotency-Key created."""
    return await session.scalar(
        select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key)
    )


async def get_job(
    session: AsyncSession, owner_id: uuid.UUID, job_id: uuid.UUID, *, for_update: bool = False
) -> Job:
    """The owner's job; NotFound for a missing or foreign one alike."""
    stmt = select(Job).where(Job.id == job_id, Job.owner_id == owner_id)
    if for_update:
        stmt = stmt.with_for_update()
    job = await session.scalar(stmt)
    if job is None:
        raise NotFound("Job not found.")
    return job


async def get_jobs(
    session: AsyncSession, owner_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> list[Job]:
    """The owner's jobs of these ids, in the order given (those not found left out)."""
    if not job_ids:
        return []
    stmt = select(Job).where(Job.id.in_(job_ids), Job.owner_id == owner_id)
    found = {job.id: job for job in await session.scalars(stmt)}
    return [found[job_id] for job_id in job_ids if job_id in found]


async def list_attempts(session: AsyncSession, job: Job) -> list[JobAttempt]:
    """The job's attempts, oldest first."""
    rows = await session.scalars(
        select(JobAttempt).where(JobAttempt.job_id == job.id).order_by(JobAttempt.fence)
    )
    return list(rows.all())


async def cancel_job(session: AsyncSession, job: Job) -> Job:
    """Cancel a queued or running job; a running one is stopped by its worker's watch. Its
    webhook deliveries are queued in the same transaction."""
    now = utcnow()
    if job.kind == "crawl":
        # First: a refill of this crawl that runs now ends before this cancel goes on, and one
        # that comes later finds the crawl cancelled.
        await lock_crawl(session, job.id)
    row = (
        await session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(status=JobStatus.CANCELLED, finished_at=now, lease_expires_at=None)
            .returning(*webhook_urls())
        )
    ).first()
    if row is None:
        raise InvalidState(f"A {job.status} job cannot be cancelled.")
    await add_deliveries(session, job.id, JobStatus.CANCELLED, row[0], row[1])
    if job.kind == "crawl":
        await _cancel_pages(session, job.id, now)
    await session.refresh(job)
    return job


async def _cancel_pages(session: AsyncSession, crawl_id: uuid.UUID, now: datetime) -> None:
    """A cancelled crawl's queued pages are cancelled; running ones are stopped by their
    workers' cancel watch. (At most the crawl's in-flight pages: the rest wait in its
    frontier, and a retry resumes it.)"""
    await session.execute(
        update(Job)
        .where(
            Job.parent_id == crawl_id,
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
        .values(status=JobStatus.CANCELLED, finished_at=now, lease_expires_at=None)
    )


def retry_values() -> dict[str, Any]:
    """A retried job's row: queued now, with a fresh attempt budget and no outcome."""
    return {
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "error": None,
        "result": None,
        "run_after": utcnow(),
        "finished_at": None,
        "worker_id": None,
        "lease_expires_at": None,
    }


async def retry_job(session: AsyncSession, job: Job) -> Job:
    """Send a failed or cancelled job round again with a fresh attempt budget."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_([JobStatus.FAILED, JobStatus.CANCELLED]))
        .values(**retry_values())
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise InvalidState(f"A {job.status} job cannot be retried; only failed or cancelled.")
    await session.refresh(job)
    return job


async def retry_failed_jobs(
    session: AsyncSession, owner_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> list[Job]:
    """Send these of the owner's jobs round again if they are still failed (others are left
    as they are); the retried ones, newest first."""
    if not job_ids:
        return []
    rows = await session.scalars(
        update(Job)
        .where(Job.id.in_(job_ids), Job.owner_id == owner_id, Job.status == JobStatus.FAILED)
        .values(**retry_values())
        .returning(Job),
        execution_options={"synchronize_session": False},
    )
    return sorted(rows.all(), key=lambda job: (job.created_at, job.id), reverse=True)


async def queued_by_owner(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Each owner's queued jobs, a crawl's pages aside (OUTRIDER_OWNER_MAX_QUEUED's count):
    one pass over the queued rows (the status index)."""
    rows = await session.execute(
        select(Job.owner_id, func.count())
        .where(Job.status == JobStatus.QUEUED, Job.parent_id.is_(None))
        .group_by(Job.owner_id)
    )
    return {owner_id: int(count) for owner_id, count in rows.all()}

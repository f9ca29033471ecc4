"""Jobs as workers see them: claim with fencing, record outcomes, leases, reconciliation.

Every write after the claim names the claim's `fence`, so a worker presumed dead can never
overwrite what a newer attempt wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Agent, AttemptOutcome, Job, JobAttempt, JobStatus, utcnow
from shared.repositories.webhooks import add_deliveries, webhook_urls


@dataclass(frozen=True)
class Claim:
    """A job this worker now runs, under fence `fence`."""

    job: Job
    agent: Agent
    fence: int


@dataclass(frozen=True)
class Outcome:
    """What an attempt ended with."""

    status: JobStatus
    attempt_outcome: AttemptOutcome
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    run_after: datetime | None = None
    refund_attempt: bool = False
    bytes_fetched: int = 0  # the attempt's (worker/engines/base.py Meter): added to the job's


async def claim_job(
    session: AsyncSession, job_id: uuid.UUID, worker_id: str, lease_s: float
) -> Claim | None:
    """Move a queued job to running for this worker; None if it is not claimable."""
    now = utcnow()
    job = await session.scalar(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            fence=Job.fence + 1,
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_s),
            started_at=case((Job.started_at.is_(None), now), else_=Job.started_at),
        )
        .returning(Job)
        .execution_options(synchronize_session=False)
    )
    if job is None:
        return None
    agent = await session.scalar(select(Agent).where(Agent.id == job.agent_id))
    assert agent is not None  # jobs reference agents by foreign key; agents are never hard-deleted
    session.add(
        JobAttempt(
            job_id=job.id, fence=job.fence, number=job.attempts, worker_id=worker_id, started_at=now
        )
    )
    await session.flush()
    return Claim(job=job, agent=agent, fence=job.fence)


def outcome_values(outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The job row's new values for an attempt's outcome."""
    values: dict[str, Any] = {
        "status": outcome.status,
        "result": outcome.result,
        "error": outcome.error,
        "worker_id": None,
        "lease_expires_at": None,
        "finished_at": now if outcome.status != JobStatus.QUEUED else None,
    }
    if outcome.run_after is not None:
        values["run_after"] = outcome.run_after
    if outcome.refund_attempt:
        values["attempts"] = Job.attempts - 1
    if outcome.bytes_fetched:
        values["bytes_fetched"] = func.coalesce(Job.bytes_fetched, 0) + outcome.bytes_fetched
    return values


def attempt_values(
    outcome: AttemptOutcome, error: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """The attempt row's values when it ends."""
    return {
        "outcome": outcome,
        "finished_at": now,
        "error_code": error.get("code") if error else None,
        "error_message": str(error.get("message", ""))[:2000] if error else None,
    }


async def record_outcome(
    session: AsyncSession, job_id: uuid.UUID, fence: int, outcome: Outcome
) -> bool:
    """Write an attempt's outcome if the claim still holds; False if it was fenced out. A
    terminal outcome queues the job's webhook deliveries in the same transaction."""
    values = outcome_values(outcome, utcnow())
    # A job's end is announced (webhooks) in this transaction: nothing can end unannounced.
    announce = outcome.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
    returning = webhook_urls() if announce else (Job.id,)
    row = (
        await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.fence == fence, Job.status == JobStatus.RUNNING)
            .values(**values)
            .returning(*returning)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None:
        return False
    if announce:
        await add_deliveries(session, job_id, outcome.status, row[0], row[1])
    await _close_attempt(session, job_id, fence, outcome.attempt_outcome, outcome.error)
    return True


async def park_job(
    session: AsyncSession, job_id: uuid.UUID, fence: int, result: dict[str, Any]
) -> bool:
    """Leave a running job to work that is not a worker's (a crawl's frontier): still
    `running`, but no worker holds it and no lease runs out. Its attempt ends `succeeded`.
    False if the claim was fenced out."""
    parked = (
        await session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.fence == fence,
                Job.status == JobStatus.RUNNING,
                Job.worker_id.is_not(None),  # held: parked once
            )
            .values(result=result, worker_id=None, lease_expires_at=None)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if parked is None:
        return False
    await _close_attempt(session, job_id, fence, AttemptOutcome.SUCCEEDED, None)
    return True


async def record_cancelled(session: AsyncSession, job_id: uuid.UUID, fence: int) -> None:
    """Close the attempt of a job the user cancelled while it ran."""
    error = {"code": "cancelled", "message": "Cancelled by the user."}
    await _close_attempt(session, job_id, fence, AttemptOutcome.CANCELLED, error)


async def _close_attempt(
    session: AsyncSession,
    job_id: uuid.UUID,
    fence: int,
    outcome: AttemptOutcome,
    error: dict[str, Any] | None,
) -> None:
    await session.execute(
        update(JobAttempt)
        .where(JobAttempt.job_id == job_id, JobAttempt.fence == fence)
        .values(**attempt_values(outcome, error, utcnow()))
    )


async def renew_leases(
    session: AsyncSession,
    worker_id: str,
    lease_s: float,
    job_ids: Sequence[uuid.UUID] | None = None,
) -> None:
    """Extend the leases of the jobs this worker runs (`job_ids`; None: all it holds). A claim
    whose commit the worker never saw confirmed is held but not run: it must not be renewed."""
    stmt = update(Job).where(Job.worker_id == worker_id, Job.status == JobStatus.RUNNING)
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    await session.execute(stmt.values(lease_expires_at=utcnow() + timedelta(seconds=lease_s)))


async def stale_claims(
    session: AsyncSession, running: Sequence[tuple[uuid.UUID, int]]
) -> set[uuid.UUID]:
    """Of the (job id, fence) pairs this worker runs, those no longer its to run
    (cancelled by the user, or reclaimed after its lease expired)."""
    if not running:
        return set()
    rows = await session.execute(
        select(Job.id).where(
            tuple_(Job.id, Job.fence).in_(list(running)), Job.status == JobStatus.RUNNING
        )
    )
    still_ours = {row[0] for row in rows}
    return {job_id for job_id, _ in running if job_id not in still_ours}


async def find_orphans(
    session: AsyncSession, limit: int
) -> list[tuple[uuid.UUID, int, str | None]]:
    """Running jobs whose worker stopped renewing the lease: (id, fence, worker id)."""
    rows = await session.execute(
        select(Job.id, Job.fence, Job.worker_id)
        .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < utcnow())
        .limit(limit)
    )
    return [(row[0], row[1], row[2]) for row in rows]


@dataclass(frozen=True)
class Released:
    """An orphaned job, written back: queued again (`requeued`) or failed for good."""

    job: Job
    outcome: Outcome

    @property
    def requeued(self) -> bool:
        return self.outcome.status == JobStatus.QUEUED


async def release_orphan(session: AsyncSession, job_id: uuid.UUID, fence: int) -> Released | None:
    """Requeue (or fail, if out of attempts) a job whose worker died; None if the claim has
    moved on (another pass, or the worker, got there first)."""
    job = await session.scalar(
        select(Job).where(Job.id == job_id, Job.fence == fence, Job.status == JobStatus.RUNNING)
    )
    if job is None:
        return None
    error = {
        "code": "worker_lost",
        "message": "The worker running this job stopped responding.",
        "retryable": True,
    }
    exhausted = job.attempts >= job.max_attempts
    outcome = Outcome(
        status=JobStatus.FAILED if exhausted else JobStatus.QUEUED,
        attempt_outcome=AttemptOutcome.LOST,
        error=error if exhausted else None,
        run_after=utcnow(),
    )
    if not await record_outcome(session, job_id, fence, outcome):
        return None
    if not exhausted:
        await _close_attempt(session, job_id, fence, AttemptOutcome.LOST, error)
    return Released(job=job, outcome=outcome)


@dataclass(frozen=True)
class QueuedJob:
    """A queued job as the reconciler needs it (enough to enqueue and announce it)."""

    id: uuid.UUID
    owner_id: uuid.UUID
    kind: str
    queue: str
    attempts: int
    run_after: datetime
    priority: int = 5


async def find_unenqueued(
    session: AsyncSession,
    older_than: datetime,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[QueuedJob]:
    """Queued jobs due for longer than the grace period: their enqueue may have been lost."""
    columns = (Job.id, Job.owner_id, Job.kind, Job.queue, Job.attempts, Job.run_after)
    stmt = select(*columns, Job.priority).where(
        Job.status == JobStatus.QUEUED, Job.run_after < older_than
    )
    if after is not None:
        stmt = stmt.where(tuple_(Job.run_after, Job.id) > tuple_(*after))
    rows = await session.execute(stmt.order_by(Job.run_after, Job.id).limit(limit))
    return [QueuedJob(*row) for row in rows]

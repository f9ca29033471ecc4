"""Cross-owner views and bulk actions for operators (the `outrider jobs` CLI).

The API never calls these: everything it does is scoped to the caller's owner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Job, JobStatus, Owner
from shared.repositories.execution import QueuedJob
from shared.repositories.job import retry_values

RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class JobQuery:
    """Which jobs: None means any."""

    status: str | None = None
    kind: str | None = None
    owner: str | None = None
    finished_since: datetime | None = None


def _matching(query: JobQuery) -> Any:  # a Select of (Job, owner name)
    stmt = select(Job, Owner.name).join(Owner, Owner.id == Job.owner_id)
    if query.status:
        stmt = stmt.where(Job.status == query.status)
    if query.kind:
        stmt = stmt.where(Job.kind == query.kind)
    if query.owner:
        stmt = stmt.where(Owner.name == query.owner)
    if query.finished_since:
        stmt = stmt.where(Job.finished_at >= query.finished_since)
    return stmt


async def recent_jobs(session: AsyncSession, query: JobQuery, limit: int) -> list[tuple[Job, str]]:
    """The newest matching jobs with their owner's name."""
    rows = await session.execute(
        _matching(query).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    )
    return [(row[0], row[1]) for row in rows]


async def retry_batch(session: AsyncSession, query: JobQuery, limit: int) -> list[QueuedJob]:
    """Queue up to `limit` matching failed or cancelled jobs again, each with a fresh attempt
    budget (what POST /v1/jobs/{id}/retry does to one). Retried jobs lose their finished_at,
    so calling this again moves on to the next batch."""
    if query.status not in RETRYABLE:
        raise ValueError(f"only {' or '.join(RETRYABLE)} jobs can be retried")
    ids = select(Job.id).where(
        Job.id.in_(
            _matching(query).with_only_columns(Job.id).order_by(Job.finished_at).limit(limit)
        )
    )
    rows = await session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.status == query.status)
        .values(**retry_values())
        .returning(
            Job.id, Job.owner_id, Job.kind, Job.queue, Job.attempts, Job.run_after, Job.priority
        )
        .execution_options(synchronize_session=False)
    )
    return [QueuedJob(*row) for row in rows]


async def owner_id_of(session: AsyncSession, name: str) -> uuid.UUID | None:
    """An owner's id by name."""
    return await session.scalar(select(Owner.id).where(Owner.name == name))

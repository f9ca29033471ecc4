"""Retention: deleting the history of jobs that ended long ago (worker/retention.py runs it).

A job that ended (succeeded, failed or cancelled) before the cutoff goes with everything that
hangs off it: its attempts, artifacts and webhook deliveries (the foreign keys cascade). A job
with a webhook delivery still pending is kept until the delivery settles. A schedule's run goes
once its job has gone (or it never had one: a skipped instant) and its instant is before the
cutoff. Each call deletes at most `limit` rows in the caller's transaction, oldest first; on
PostgreSQL rows another transaction holds are skipped, so workers pruning at once share the
work instead of queueing behind each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import is_postgres
from shared.models import (
    TERMINAL_STATUSES,
    DeliveryStatus,
    Job,
    ScheduleRun,
    WebhookDelivery,
)


async def delete_ended_jobs(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` jobs that ended before `cutoff`; how many went."""
    pending_delivery = exists().where(
        WebhookDelivery.job_id == Job.id, WebhookDelivery.status == DeliveryStatus.PENDING
    )
    ids = (
        select(Job.id)
        .where(
            Job.status.in_(TERMINAL_STATUSES),
            Job.finished_at.is_not(None),
            Job.finished_at < cutoff,
            ~pending_delivery,
        )
        .order_by(Job.finished_at)
        .limit(limit)
    )
    # The status is checked again on the row itself: a job sent round again (retry) between
    # the selection and the delete is no longer ended, and stays.
    return await _delete_selected(session, Job, ids, Job.status.in_(TERMINAL_STATUSES))


async def delete_old_schedule_runs(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` schedule runs before `cutoff` whose job is gone; how many went."""
    ids = (
        select(ScheduleRun.id)
        .where(ScheduleRun.instant < cutoff, ScheduleRun.job_id.is_(None))
        .order_by(ScheduleRun.instant)
        .limit(limit)
    )
    return await _delete_selected(session, ScheduleRun, ids)


async def _delete_selected(
    session: AsyncSession,
    model: type[Job] | type[ScheduleRun],
    ids: Select[Any],
    *conditions: ColumnElement[bool],
) -> int:
    """DELETE the rows whose ids `ids` selects (and that still meet `conditions`); how many."""
    if is_postgres(session):
        ids = ids.with_for_update(skip_locked=True)
    stmt = (
        delete(model)
        .where(model.id.in_(ids.scalar_subquery()), *conditions)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

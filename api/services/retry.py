"""Bulk retry: the owner's failed jobs that match a listing's filters go round again."""

from __future__ import annotations

import dataclasses
import uuid

from api.deps import AppState
from api.services.submit import enqueue_jobs
from shared.models import Job
from shared.repositories import job as jobs
from shared.repositories import job_list
from shared.repositories.job_list import JobFilters


async def retry_failed(
    state: AppState, owner_id: uuid.UUID, filters: JobFilters, limit: int
) -> tuple[list[Job], bool]:
    """Retry at most `limit` of the owner's failed jobs that `filters` find, newest first (a
    job that changed meanwhile is left alone); the retried jobs, and whether more match."""
    failed = dataclasses.replace(filters, statuses=("failed",))
    async with state.sessionmaker.begin() as session:
        rows, next_cursor = await job_list.list_jobs(session, owner_id, failed, None, limit)
        retried = await jobs.retry_failed_jobs(session, owner_id, [job.id for job in rows])
    await enqueue_jobs(state, retried, reason="retry")
    return retried, next_cursor is not None

"""API test fixtures: jobs a test leaves queued are cancelled when it ends.

Without a worker, accepted jobs stay `queued`; the next test that starts a worker would run them
(its reconciler re-enqueues old queued rows), slowing it down and calling URLs nobody serves.
Cancelled rows are skipped by the worker's claim, so cancelling them isolates the tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job, JobStatus, Schedule, utcnow


@pytest.fixture(autouse=True)
async def _cancel_leftover_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[None]:
    started = utcnow()
    yield
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(
                Job.status == JobStatus.QUEUED,
                or_(Job.created_at >= started, Job.run_after >= started),
            )
            .values(status=JobStatus.CANCELLED, finished_at=utcnow())
        )


@pytest.fixture(autouse=True)
async def _pause_leftover_schedules(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[None]:
    """Schedules a test made (the fuzzer makes some too) must not fire in later worker tests."""
    yield
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Schedule).where(Schedule.enabled.is_(True)).values(enabled=False)
        )

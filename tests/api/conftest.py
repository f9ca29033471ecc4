"""API test fixtures: schedules a test made are paused when it ends (leftover jobs and
webhook deliveries are settled for every test, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Schedule


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

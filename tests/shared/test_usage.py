"""An owner's usage by UTC day and kind (shared/repositories/usage.py), on SQLite and
PostgreSQL alike: jobs, pages, bytes fetched, browser seconds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from migrations import apply as migrate
from shared.db import create_engine, create_sessionmaker
from shared.models import Job, JobAttempt
from shared.repositories.usage import owner_usage
from shared.settings import Settings
from tests.worker.support import Owner, make_owner

Sessions = async_sessionmaker[AsyncSession]
DAY = date(2026, 3, 10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
        migrate.upgrade(url)  # a sync fixture: the migrations run their own event loop
        settings = settings.model_copy(update={"database_url": url, "data_dir": tmp_path})
    return settings


@pytest.fixture
async def sessions(database: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(database)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def _job(
    sessions: Sessions,
    owner: Owner,
    kind: str,
    status: str,
    created_at: datetime,
    *,
    result: dict[str, Any] | None = None,
    queue: str = "default",
    attempts_s: tuple[float, ...] = (),
    fetched: int | None = None,
) -> None:
    job_id = uuid.uuid4()
    async with sessions.begin() as session:
        session.add(
            Job(
                id=job_id,
                owner_id=owner.id,
                agent_id=owner.agent_id,
                kind=kind,
                queue=queue,
                status=status,
                input={"url": "http://127.0.0.1:9/"},
                result=result,
                bytes_fetched=fetched,
                max_attempts=3,
                timeout_s=30.0,
                created_at=created_at,
                run_after=created_at,
            )
        )
        await session.flush()
        for number, seconds in enumerate(attempts_s, start=1):
            start = created_at + timedelta(seconds=10 * number)
            session.add(
                JobAttempt(
                    job_id=job_id,
                    fence=number,
                    number=number,
                    worker_id="w",
                    started_at=start,
                    finished_at=start + timedelta(seconds=seconds),
                    outcome="succeeded",
                )
            )


async def test_usage_by_day_and_kind(sessions: Sessions) -> None:
    owner, other = await make_owner(sessions), await make_owner(sessions)
    page = {"markdown": "x"}
    # One day, from its first minute to its last: two fetches (one failed after reading 24
    # bytes of an error page), an http call.
    await _job(sessions, owner, "fetch", "succeeded", _at(DAY, 23, 59), result=page, fetched=1000)
    await _job(sessions, owner, "fetch", "failed", _at(DAY, 0, 0), fetched=24)
    await _job(sessions, owner, "http", "succeeded", _at(DAY, 12), result={"status": 200})
    # Next day: a render on the browser queue with two attempts (1.5 s + 2.25 s), a queued one.
    next_day = DAY + timedelta(days=1)
    await _job(
        sessions, owner, "render", "succeeded", _at(next_day, 0, 1),
        result=page, queue="browser", attempts_s=(1.5, 2.25), fetched=500,
    )  # fmt: skip
    await _job(sessions, owner, "scrape", "queued", _at(next_day, 3))
    # Another owner's jobs, and one of ours outside the range: never counted.
    await _job(sessions, other, "fetch", "succeeded", _at(DAY, 12), result=page, fetched=9)
    later = _at(DAY + timedelta(days=2), 0)
    await _job(sessions, owner, "fetch", "succeeded", later, result=page, fetched=9)

    async with sessions() as session:
        rows = await owner_usage(session, owner.id, DAY, next_day)
        only_first = await owner_usage(session, owner.id, DAY, DAY)
    table = [
        (r.day, r.kind, r.jobs, r.succeeded, r.failed, r.pages, r.bytes_fetched, r.browser_seconds)
        for r in rows
    ]
    assert table == [
        (DAY, "fetch", 2, 1, 1, 1, 1024, 0.0),
        (DAY, "http", 1, 1, 0, 0, 0, 0.0),
        (next_day, "render", 1, 1, 0, 1, 500, 3.75),
        (next_day, "scrape", 1, 0, 0, 0, 0, 0.0),
    ]
    assert [(r.day, r.kind) for r in only_first] == [(DAY, "fetch"), (DAY, "http")]

"""Job counts kept by the job table's triggers (migration 0010_ledger): they match COUNT(*)
through inserts (one and many a statement), status changes, other updates, deletes, folds
running concurrently with writes, the migration's backfill and TRUNCATE (PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from migrations import apply as migrate
from shared.repositories.job_counts import fold_job_counts, job_counts
from tests.conftest import TEST_DATABASE_URL, _create_pg_database, _drop_pg_database

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="triggers are PostgreSQL's")

COUNT_SQL = "SELECT queue, kind, status, count(*) FROM job GROUP BY 1, 2, 3"
# `n` jobs of one owner in one statement: (queue, kind, status) cycle through a few values.
INSERT_SQL = """
INSERT INTO job (id, owner_id, agent_id, kind, queue, status, input, attempts, max_attempts,
                 timeout_s, fence, run_after, priority, created_at)
SELECT gen_random_uuid(), :owner, :agent,
       (ARRAY['http', 'fetch', 'render'])[1 + i % 3],
       CASE WHEN i % 3 = 2 THEN 'browser' ELSE 'default' END,
       (ARRAY['queued', 'running', 'succeeded', 'failed'])[1 + i % 4],
       '{}', 0, 3, 60, 0, now(), 5, now()
FROM generate_series(1, :n) AS i
"""


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """A database of this test's own (the counts are the whole table's)."""
    assert TEST_DATABASE_URL
    url = await _create_pg_database(TEST_DATABASE_URL)
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await _drop_pg_database(url)


async def _owner(engine: AsyncEngine) -> dict[str, Any]:
    owner, agent = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO owner (id, name, created_at) VALUES (:o, :name, now())"),
            {"o": owner, "name": f"counts-{owner}"},
        )
        await conn.execute(
            text(
                "INSERT INTO agent (id, owner_id, name, is_default, headers, obey_robots,"
                " allowed_domains, blocked_domains, secret_names, created_at, updated_at)"
                " VALUES (:a, :o, 'default', true, '{}', true, '[]', '[]', '[]', now(), now())"
            ),
            {"a": agent, "o": owner},
        )
    return {"owner": owner, "agent": agent}


Counts = dict[tuple[str, ...], int]


async def _both(engine: AsyncEngine) -> tuple[Counts, Counts]:
    """The kept counts and COUNT(*), read in one snapshot."""
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        async with AsyncSession(bind=conn) as session:
            kept: Counts = {(q, k, s): n for q, k, s, n in await job_counts(session)}
        rows = await conn.execute(text(COUNT_SQL))
        counted: Counts = {(q, k, s): n for q, k, s, n in rows}
        await conn.rollback()
    return kept, counted


async def _fold(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        await fold_job_counts(session)


async def _delta_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM job_count"))).scalar_one())


async def test_counts_follow_inserts_updates_and_deletes(engine: AsyncEngine) -> None:
    ids = await _owner(engine)
    async with engine.begin() as conn:
        await conn.execute(text(INSERT_SQL), {**ids, "n": 1000})  # a batch: one statement
        for _ in range(3):
            await conn.execute(text(INSERT_SQL), {**ids, "n": 1})  # single submissions
    assert await _delta_rows(engine) < 20  # per key and statement, not per job
    async with engine.begin() as conn:
        # A claim, outcomes, a retry, a lease renewal that changes no status, a delete.
        await conn.execute(
            text(
                "UPDATE job SET status = 'running' WHERE id IN (SELECT id FROM job"
                " WHERE status = 'queued' LIMIT 50)"
            )
        )
        await conn.execute(text("UPDATE job SET status = 'succeeded' WHERE status = 'running'"))
        await conn.execute(text("UPDATE job SET status = 'queued' WHERE status = 'failed'"))
        await conn.execute(text("UPDATE job SET lease_expires_at = now(), attempts = 1"))
        await conn.execute(text("UPDATE job SET queue = 'browser' WHERE kind = 'fetch'"))
        await conn.execute(text("DELETE FROM job WHERE id IN (SELECT id FROM job LIMIT 77)"))
    kept, counted = await _both(engine)
    assert kept == counted
    assert sum(counted.values()) == 1003 - 77
    await _fold(engine)
    kept, counted = await _both(engine)
    assert kept == counted
    assert await _delta_rows(engine) == len(counted)  # one row per key after a fold


async def test_folds_racing_writers_lose_nothing(engine: AsyncEngine) -> None:
    ids = await _owner(engine)

    async def write(rounds: int) -> None:
        for n in range(rounds):
            async with engine.begin() as conn:
                await conn.execute(text(INSERT_SQL), {**ids, "n": 1 + n % 7})
                await conn.execute(
                    text(
                        "UPDATE job SET status = 'succeeded' WHERE id IN (SELECT id FROM job"
                        " WHERE status = 'queued' LIMIT 3)"
                    )
                )

    async def fold(rounds: int) -> None:
        for _ in range(rounds):
            await _fold(engine)

    await asyncio.gather(write(40), write(40), fold(30), fold(30))
    kept, counted = await _both(engine)
    assert kept == counted
    assert sum(counted.values()) == 2 * sum(1 + n % 7 for n in range(40))


async def test_migration_backfills_the_counts_and_truncate_zeroes_them() -> None:
    assert TEST_DATABASE_URL
    url = await _create_pg_database(TEST_DATABASE_URL)
    engine = create_async_engine(url)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "0008")
        ids = await _owner(engine)
        async with engine.begin() as conn:
            await conn.execute(text(INSERT_SQL), {**ids, "n": 40})
        await asyncio.to_thread(migrate.upgrade, url)
        kept, counted = await _both(engine)
        assert kept == counted
        assert sum(kept.values()) == 40
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE job CASCADE"))
        assert await _both(engine) == ({}, {})
        await asyncio.to_thread(migrate.downgrade, url, "0008")
        async with engine.begin() as conn:
            await conn.execute(text(INSERT_SQL), {**ids, "n": 2})  # no trigger left behind
    finally:
        await engine.dispose()
        await _drop_pg_database(url)

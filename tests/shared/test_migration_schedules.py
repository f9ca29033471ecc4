"""Migration 0002 (schedules) goes up and down on SQLite and PostgreSQL, losing no job data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations import apply as migrate
from tests.conftest import TEST_DATABASE_URL, _create_pg_database, _drop_pg_database


async def _describe(url: str) -> tuple[set[str], set[str], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            def read(sync_conn: object) -> tuple[set[str], set[str], set[str]]:
                found = inspect(sync_conn)
                tables = set(found.get_table_names())
                columns = {c["name"] for c in found.get_columns("job")}
                indexes = {i["name"] or "" for i in found.get_indexes("job")}
                return tables, columns, indexes

            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = await conn.execute(text(statement))
                if result.returns_rows:
                    rows = [tuple(row) for row in result]
            return rows
    finally:
        await engine.dispose()


def _seed_job(url: str) -> None:
    owner, agent, job = (uuid.uuid4().hex for _ in range(3))
    if url.startswith("postgresql"):
        owner, agent, job = (str(uuid.UUID(v)) for v in (owner, agent, job))
    now = "2026-01-01 00:00:00"
    asyncio.run(
        _execute(
            url,
            f"INSERT INTO owner (id, name, created_at) VALUES ('{owner}', 'o', '{now}')",
            f"INSERT INTO agent (id, owner_id, name, is_default, headers, allowed_domains, "
            f"blocked_domains, secret_names, created_at, updated_at) VALUES ('{agent}', "
            f"'{owner}', 'default', true, '{{}}', '[]', '[]', '[]', '{now}', '{now}')",
            f"INSERT INTO job (id, owner_id, agent_id, kind, queue, status, input, attempts, "
            f"max_attempts, timeout_s, fence, run_after, created_at) VALUES ('{job}', "
            f"'{owner}', '{agent}', 'http', 'default', 'succeeded', '{{}}', 1, 3, 30, 1, "
            f"'{now}', '{now}')",
            f"INSERT INTO job_attempt (job_id, fence, number, worker_id, started_at, outcome) "
            f"VALUES ('{job}', 1, 1, 'w', '{now}', 'succeeded')",
        )
    )


def _counts(url: str) -> list[tuple[object, ...]]:
    return asyncio.run(
        _execute(url, "SELECT (SELECT count(*) FROM job), (SELECT count(*) FROM job_attempt)")
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
        return
    url = asyncio.run(_create_pg_database(TEST_DATABASE_URL))
    try:
        yield url
    finally:
        asyncio.run(_drop_pg_database(url))


def test_schedules_migration_is_reversible(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0001")
    _seed_job(scratch_url)
    migrate.upgrade(scratch_url, "0002")
    tables, columns, indexes = asyncio.run(_describe(scratch_url))
    assert {"schedule", "schedule_run"} <= tables
    assert {"schedule_id", "schedule_instant"} <= columns
    assert {"ix_job_schedule_instant", "ix_job_schedule_active"} <= indexes
    migrate.downgrade(scratch_url, "0001")
    tables, columns, indexes = asyncio.run(_describe(scratch_url))
    assert not {"schedule", "schedule_run"} & tables
    assert not {"schedule_id", "schedule_instant"} & columns
    assert _counts(scratch_url) == [(1, 1)]  # nothing cascaded away
    migrate.upgrade(scratch_url, "0002")
    assert _counts(scratch_url) == [(1, 1)]

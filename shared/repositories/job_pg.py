"""New jobs as one PostgreSQL statement, straight through asyncpg (the API's group commit).

`insert_jobs_pg` writes what `shared.repositories.job.insert_jobs` writes, as a single
`INSERT ... SELECT FROM unnest(...)` of one array per column: one round trip and no
BEGIN/COMMIT (a single statement is atomic), prepared once per connection. Through SQLAlchemy
the same insert took three round trips (BEGIN, INSERT, COMMIT) and more of the API's CPU than
PostgreSQL spent on it. `insert_jobs` stays the portable path (SQLite, and inserts that share a
transaction with other writes: batches, idempotent submissions, schedules).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from shared.models import Job
from shared.repositories.execution_pg import PgExecutor
from shared.repositories.job import NewJob, new_job_values

JOB = cast(Table, Job.__table__)


@functools.cache
def _insert(columns: tuple[str, ...]) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"${n}::{JOB.c[name].type.compile(dialect=dialect)}[]" for n, name in enumerate(columns, 1)
    )
    names = ", ".join(f'"{name}"' for name in columns)
    return f"INSERT INTO {JOB.name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608


async def insert_jobs_pg(
    pg: PgExecutor, rows: Sequence[dict[str, Any]], *, now: datetime | None = None
) -> list[NewJob]:
    """Insert queued jobs in one statement and return them in order. Every row names the
    same columns (they come from `shared.services.jobs.job_row`)."""
    values = new_job_values(rows, now)
    columns = tuple(values[0])
    if any(value.keys() != values[0].keys() for value in values):
        raise ValueError("insert_jobs_pg: every row must name the same columns")
    await pg.execute(_insert(columns), *([value[name] for value in values] for name in columns))
    return [NewJob(**value) for value in values]

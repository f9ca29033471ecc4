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


@functools.lru_cache(maxsize=256)
def _insert(columns: tuple[str, ...], shared: tuple[bool, ...]) -> str:
    """The statement for these columns; a `shared` column is one parameter, not an array."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    selected, arrays, names = [], [], []
    for n, (name, one) in enumerate(zip(columns, shared, strict=True), 1):
        sql_type = JOB.c[name].type.compile(dialect=dialect)
        if one:
            selected.append(f"${n}::{sql_type}")
        else:
            arrays.append(f"${n}::{sql_type}[]")
            names.append(f'"{name}"')
            selected.append(f'u."{name}"')
    into = ", ".join(f'"{name}"' for name in columns)
    source = f" FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})" if arrays else ""
    return f"INSERT INTO {JOB.name} ({into}) SELECT {', '.join(selected)}{source}"


async def insert_jobs_pg(
    pg: PgExecutor, rows: Sequence[dict[str, Any]], *, now: datetime | None = None
) -> list[NewJob]:
    """Insert queued jobs in one statement and return them in order. Every row names the
    same columns (they come from `shared.services.jobs.job_row`)."""
    values = new_job_values(rows, now)
    columns = tuple(values[0])
    if any(value.keys() != values[0].keys() for value in values):
        raise ValueError("insert_jobs_pg: every row must name the same columns")
    # A column holding the very same object in every row (the creation time, the status, a
    # batch's owner and agent) is sent once: identity, not equality, so a value is never
    # replaced by an equal one that encodes differently (1 and 1.0 and True in JSON).
    shared = tuple(all(value[name] is values[0][name] for value in values) for name in columns)
    args = [
        values[0][name] if one else [value[name] for value in values]
        for name, one in zip(columns, shared, strict=True)
    ]
    await pg.execute(_insert(columns, shared), *args)
    return [NewJob(**value) for value in values]

"""The job store on PostgreSQL: insert, claim and outcome as one asyncpg statement each.

What runs for every job is written straight through asyncpg: SQLAlchemy's checkout, execution
and ORM construction cost about four times the statement itself in the API's and the worker's
CPU. Each is a single statement (atomic on its own: no BEGIN/COMMIT, one round trip), prepared
once per connection:
- insert: `INSERT ... SELECT FROM unnest(...)` of one array per column (a column that holds the
  very same value in every row is one parameter);
- claim: UPDATE the row, INSERT its attempt and read its agent, with data-modifying CTEs;
- outcome: UPDATE the row and close the attempt. An outcome that ends a job with webhooks to
  announce is written by the SQLAlchemy path instead, in one transaction with its deliveries;
- the result cache: one SELECT to read, one DELETE-and-INSERT (a CTE) to replace; on this
  pool, not the engine's, so a burst of cache look-ups costs no extra connections.
Everything else is inherited from `SqlJobStore`. The rows written are the same as its
(tests/shared/test_job_store.py).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import class_mapper

from shared.ids import new_id
from shared.models import Agent, AttemptOutcome, Job, JobAttempt, JobStatus, ResultCache, utcnow
from shared.repositories.execution import Claim, Outcome, attempt_values, outcome_values
from shared.repositories.job import NewJob, new_job_values
from shared.repositories.job_store_sql import SqlJobStore
from shared.repositories.result_cache import CachedResult

JOB = cast(Table, Job.__table__)
AGENT = cast(Table, Agent.__table__)
ATTEMPT = cast(Table, JobAttempt.__table__)
CACHE = cast(Table, ResultCache.__table__)
JOB_COLUMNS = tuple(c.name for c in JOB.c)
AGENT_COLUMNS = tuple(c.name for c in AGENT.c)


def _columns(alias: str, names: tuple[str, ...]) -> str:
    return ", ".join(f'{alias}."{name}"' for name in names)


# $1 job id, $2 worker id, $3 now, $4 lease until.
CLAIM = f"""
WITH claimed AS (
    UPDATE {JOB.name} SET status = '{JobStatus.RUNNING}', attempts = attempts + 1,
        fence = fence + 1, worker_id = $2, lease_expires_at = $4,
        started_at = COALESCE(started_at, $3)
    WHERE id = $1 AND status = '{JobStatus.QUEUED}'
    RETURNING *
), attempt AS (
    INSERT INTO {ATTEMPT.name} (job_id, fence, number, worker_id, started_at, outcome)
    SELECT id, fence, attempts, $2, $3, '{AttemptOutcome.RUNNING}' FROM claimed
)
SELECT {_columns("claimed", JOB_COLUMNS)}, {_columns("a", AGENT_COLUMNS)}
FROM claimed JOIN {AGENT.name} a ON a.id = claimed.agent_id
"""  # noqa: S608 - names from the model; every value is a parameter

# One statement for every kind of outcome: a NULL run_after keeps the row's, $12 gives an
# attempt back. $1 job id, $2 fence, $3 status, $4 result, $5 error, $6 finished_at,
# $7 run_after, $8 now, $9 attempt outcome, $10 error code, $11 error message, $12 refund.
OUTCOME = f"""
WITH updated AS (
    UPDATE {JOB.name} SET status = $3, result = $4, error = $5, worker_id = NULL,
        lease_expires_at = NULL, finished_at = $6, run_after = COALESCE($7, run_after),
        attempts = attempts - $12,
        bytes_fetched = CASE WHEN $13::bigint > 0 THEN COALESCE(bytes_fetched, 0) + $13::bigint
                             ELSE bytes_fetched END
    WHERE id = $1 AND fence = $2 AND status = '{JobStatus.RUNNING}'
    RETURNING id
), closed AS (
    UPDATE {ATTEMPT.name} SET outcome = $9, finished_at = $8, error_code = $10,
        error_message = $11
    WHERE job_id = $1 AND fence = $2 AND EXISTS (SELECT 1 FROM updated)
)
SELECT count(*) FROM updated
"""  # noqa: S608 - names from the model; every value is a parameter

CACHE_GET = f"""
SELECT result, created_at, job_id FROM {CACHE.name}
WHERE owner_id = $1 AND cache_key = $2 AND created_at > $3
ORDER BY created_at DESC LIMIT 1
"""  # noqa: S608 - names from the model; every value is a parameter

# $1 id, $2 owner id, $3 key, $4 url, $5 result, $6 job id, $7 now.
CACHE_PUT = f"""
WITH gone AS (
    DELETE FROM {CACHE.name} WHERE owner_id = $2 AND cache_key = $3 AND created_at <= $7
)
INSERT INTO {CACHE.name} (id, owner_id, cache_key, url, result, job_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""  # noqa: S608 - names from the model; every value is a parameter


@functools.lru_cache(maxsize=256)
def _insert(columns: tuple[str, ...], shared: tuple[bool, ...]) -> str:
    """The INSERT for these columns; a `shared` column is one parameter, not an array."""
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


def _snapshot(model: type[Job] | type[Agent], names: tuple[str, ...], values: Any) -> Any:
    """A read-only instance filled the way the ORM's loader fills one (no change events):
    the worker reads a claim's job and agent, it never adds them to a session."""
    instance = class_mapper(model).class_manager.new_instance()
    instance.__dict__.update(zip(names, values, strict=True))
    return instance


def announces(claim: Claim, outcome: Outcome) -> bool:
    """Whether this outcome queues webhook deliveries: the job ends and it, or its agent as of
    the claim, has a webhook_url (one set later applies to later jobs)."""
    ends = outcome.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
    return ends and bool(claim.job.webhook_url or claim.agent.webhook_url)


class PgJobStore(SqlJobStore):
    """The job store on PostgreSQL (see the module docstring)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], pool: asyncpg.Pool) -> None:
        super().__init__(sessionmaker)
        self.pool = pool

    async def insert(self, rows: Sequence[dict[str, Any]]) -> list[NewJob]:
        values = new_job_values(rows)
        columns = tuple(values[0])
        if any(value.keys() != values[0].keys() for value in values):
            raise ValueError("PgJobStore.insert: every row must name the same columns")
        # A column holding the very same object in every row (the creation time, the status, a
        # batch's owner and agent) is sent once: identity, not equality, so a value is never
        # replaced by an equal one that encodes differently (1 and 1.0 and True in JSON).
        shared = tuple(all(value[name] is values[0][name] for value in values) for name in columns)
        args = [
            values[0][name] if one else [value[name] for value in values]
            for name, one in zip(columns, shared, strict=True)
        ]
        await self.pool.execute(_insert(columns, shared), *args)
        return [NewJob(**value) for value in values]

    async def claim(self, job_id: uuid.UUID, worker_id: str, lease_s: float) -> Claim | None:
        now = utcnow()
        row = await self.pool.fetchrow(
            CLAIM, job_id, worker_id, now, now + timedelta(seconds=lease_s)
        )
        if row is None:
            return None
        values = tuple(row.values())
        split = len(JOB_COLUMNS)
        job: Job = _snapshot(Job, JOB_COLUMNS, values[:split])
        agent: Agent = _snapshot(Agent, AGENT_COLUMNS, values[split:])
        return Claim(job=job, agent=agent, fence=job.fence)

    async def record_outcome(self, claim: Claim, outcome: Outcome) -> bool:
        if announces(claim, outcome):
            return await super().record_outcome(claim, outcome)
        now = utcnow()
        job = outcome_values(outcome, now)
        attempt = attempt_values(outcome.attempt_outcome, outcome.error, now)
        written = await self.pool.fetchval(
            OUTCOME,
            claim.job.id,
            claim.fence,
            str(job["status"]),
            job["result"],
            job["error"],
            job["finished_at"],
            outcome.run_after,
            now,
            str(attempt["outcome"]),
            attempt["error_code"],
            attempt["error_message"],
            1 if outcome.refund_attempt else 0,
            outcome.bytes_fetched,
        )
        return bool(written)

    async def cached_result(
        self, owner_id: uuid.UUID, key: str, newer_than: datetime
    ) -> CachedResult | None:
        row = await self.pool.fetchrow(CACHE_GET, owner_id, key, newer_than)
        return None if row is None else CachedResult(row[0], row[1], row[2])

    async def cache_result(
        self,
        owner_id: uuid.UUID,
        key: str,
        url: str,
        result: dict[str, Any],
        job_id: uuid.UUID | None,
    ) -> datetime:
        now = utcnow()
        await self.pool.execute(CACHE_PUT, new_id(), owner_id, key, url, result, job_id, now)
        return now

    async def close(self) -> None:
        await self.pool.close()

"""The claim and the outcome as one PostgreSQL statement each, straight through asyncpg.

A job's claim (UPDATE the row, INSERT its attempt, read its agent) and its outcome (UPDATE the
row, close the attempt) are each one statement with data-modifying CTEs: atomic as a whole, one
round trip, no BEGIN/COMMIT. They write exactly what shared/repositories/execution.py's
`claim_job` and `record_outcome` write (those stay the portable path: SQLite, and outcomes that
must queue webhook deliveries in the same transaction).

They run on the worker's own asyncpg pool (`shared.db.create_pg_pool`), not through
SQLAlchemy: these two statements run for every job, and SQLAlchemy's checkout, execution and
ORM construction cost about four times the statement itself in the worker's CPU. asyncpg
prepares each statement once per connection and keeps it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, TypeAlias, cast

import asyncpg
from sqlalchemy import Table
from sqlalchemy.orm import class_mapper

from shared.models import Agent, AttemptOutcome, Job, JobAttempt, JobStatus, utcnow
from shared.repositories.execution import Claim, Outcome, attempt_values, outcome_values

JOB = cast(Table, Job.__table__)
AGENT = cast(Table, Agent.__table__)
ATTEMPT = cast(Table, JobAttempt.__table__)
JOB_COLUMNS = tuple(c.name for c in JOB.c)
AGENT_COLUMNS = tuple(c.name for c in AGENT.c)

PgExecutor: TypeAlias = asyncpg.Pool | asyncpg.Connection


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
        attempts = attempts - $12
    WHERE id = $1 AND fence = $2 AND status = '{JobStatus.RUNNING}'
    RETURNING id
), closed AS (
    UPDATE {ATTEMPT.name} SET outcome = $9, finished_at = $8, error_code = $10,
        error_message = $11
    WHERE job_id = $1 AND fence = $2 AND EXISTS (SELECT 1 FROM updated)
)
SELECT count(*) FROM updated
"""  # noqa: S608 - names from the model; every value is a parameter


def _snapshot(model: type[Job] | type[Agent], names: tuple[str, ...], values: Any) -> Any:
    """A read-only instance filled the way the ORM's loader fills one (no change events):
    the worker reads a claim's job and agent, it never adds them to a session."""
    instance = class_mapper(model).class_manager.new_instance()
    instance.__dict__.update(zip(names, values, strict=True))
    return instance


async def claim_job_pg(
    pg: PgExecutor, job_id: uuid.UUID, worker_id: str, lease_s: float
) -> Claim | None:
    """`claim_job` in one statement."""
    now = utcnow()
    row = await pg.fetchrow(CLAIM, job_id, worker_id, now, now + timedelta(seconds=lease_s))
    if row is None:
        return None
    values = tuple(row.values())
    split = len(JOB_COLUMNS)
    job: Job = _snapshot(Job, JOB_COLUMNS, values[:split])
    agent: Agent = _snapshot(Agent, AGENT_COLUMNS, values[split:])
    return Claim(job=job, agent=agent, fence=job.fence)


async def record_outcome_pg(
    pg: PgExecutor, job_id: uuid.UUID, fence: int, outcome: Outcome
) -> bool:
    """`record_outcome` in one statement, for an outcome that queues no webhook delivery.
    False if the claim was fenced out."""
    now = utcnow()
    job = outcome_values(outcome, now)
    attempt = attempt_values(outcome.attempt_outcome, outcome.error, now)
    written = await pg.fetchval(
        OUTCOME,
        job_id,
        fence,
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
    )
    return bool(written)

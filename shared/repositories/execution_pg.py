"""The claim and the outcome as one PostgreSQL statement each, run outside a transaction block.

A job's claim (UPDATE the row, INSERT its attempt, read its agent) and its outcome (UPDATE the
row, close the attempt) are each one statement with data-modifying CTEs: atomic as a whole, one
round trip, no BEGIN/COMMIT. They write exactly what shared/repositories/execution.py's
`claim_job` and `record_outcome` write (those stay the portable path: SQLite, and outcomes that
must queue webhook deliveries in the same transaction).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, Uuid, bindparam, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Agent, AttemptOutcome, Job, JobAttempt, JobStatus, TZDateTime, utcnow
from shared.repositories.execution import Claim, Outcome, attempt_values, outcome_values

JOB = cast(Table, Job.__table__)
ATTEMPT = cast(Table, JobAttempt.__table__)
AGENT = cast(Table, Agent.__table__)


def _claim_statement() -> Any:
    now = bindparam("now", type_=TZDateTime())
    claimed = (
        update(JOB)
        .where(JOB.c.id == bindparam("job_id"), JOB.c.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING,
            attempts=JOB.c.attempts + 1,
            fence=JOB.c.fence + 1,
            worker_id=bindparam("worker_id"),
            lease_expires_at=bindparam("lease_until", type_=TZDateTime()),
            started_at=func.coalesce(JOB.c.started_at, now),
        )
        .returning(*JOB.c)
        .cte("claimed")
    )
    attempt = (
        insert(ATTEMPT)
        .from_select(
            ["job_id", "fence", "number", "worker_id", "started_at", "outcome"],
            select(
                claimed.c.id,
                claimed.c.fence,
                claimed.c.attempts,
                bindparam("worker_id"),
                now,
                literal(AttemptOutcome.RUNNING.value),
            ),
        )
        .cte("attempt")
    )
    columns = [claimed.c[c.name].label(f"job_{c.name}") for c in JOB.c]
    columns += [AGENT.c[c.name].label(f"agent_{c.name}") for c in AGENT.c]
    return (
        select(*columns)
        .select_from(claimed.join(AGENT, AGENT.c.id == claimed.c.agent_id))
        .add_cte(attempt)
    )


CLAIM = _claim_statement()


async def claim_job_pg(
    conn: AsyncConnection, job_id: uuid.UUID, worker_id: str, lease_s: float
) -> Claim | None:
    """`claim_job` in one statement; `conn` in autocommit mode."""
    now = utcnow()
    params = {
        "job_id": job_id,
        "worker_id": worker_id,
        "now": now,
        "lease_until": now + timedelta(seconds=lease_s),
    }
    row = (await conn.execute(CLAIM, params)).first()
    if row is None:
        return None
    values = row._mapping
    job = Job(**{c.name: values[f"job_{c.name}"] for c in JOB.c})
    agent = Agent(**{c.name: values[f"agent_{c.name}"] for c in AGENT.c})
    return Claim(job=job, agent=agent, fence=job.fence)


# Plain SQL: one statement for every kind of outcome (an unset run_after keeps the row's, and
# `refund` gives an attempt back).
OUTCOME = text(
    """
    WITH updated AS (
        UPDATE job SET status = :status, result = :result, error = :error, worker_id = NULL,
            lease_expires_at = NULL, finished_at = :finished_at,
            run_after = COALESCE(:run_after, run_after), attempts = attempts - :refund
        WHERE id = :job_id AND fence = :fence AND status = 'running'
        RETURNING id
    ), closed AS (
        UPDATE job_attempt SET outcome = :outcome, finished_at = :now,
            error_code = :error_code, error_message = :error_message
        WHERE job_id = :job_id AND fence = :fence AND EXISTS (SELECT 1 FROM updated)
    )
    SELECT count(*) FROM updated
    """
).bindparams(
    bindparam("job_id", type_=Uuid()),
    bindparam("result", type_=JOB.c.result.type),
    bindparam("error", type_=JOB.c.error.type),
    bindparam("finished_at", type_=TZDateTime()),
    bindparam("run_after", type_=TZDateTime()),
    bindparam("now", type_=TZDateTime()),
)


async def record_outcome_pg(
    conn: AsyncConnection, job_id: uuid.UUID, fence: int, outcome: Outcome
) -> bool:
    """`record_outcome` in one statement, for an outcome that queues no webhook delivery;
    `conn` in autocommit mode. False if the claim was fenced out."""
    now = utcnow()
    job = outcome_values(outcome, now)
    attempt = attempt_values(outcome.attempt_outcome, outcome.error, now)
    params = {
        "job_id": job_id,
        "fence": fence,
        "status": job["status"],
        "result": job["result"],
        "error": job["error"],
        "finished_at": job["finished_at"],
        "run_after": outcome.run_after,
        "now": now,
        "outcome": attempt["outcome"],
        "error_code": attempt["error_code"],
        "error_message": attempt["error_message"],
    }
    params["refund"] = 1 if outcome.refund_attempt else 0
    return bool(await conn.scalar(OUTCOME, params))

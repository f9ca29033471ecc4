"""How many jobs there are by (queue, kind, status), without counting the job table.

On PostgreSQL, triggers on `job` (migration 0010_ledger) write signed deltas into `job_count`
in the transaction of every insert, delete and status change, so the counts are the sums of a
few rows whatever the size of the ledger: no hot counter row that every writer would queue
behind (each write adds its own delta row), and no GROUP BY over millions of jobs when
/metrics is scraped. The reconciler folds the deltas into one row per key on each pass, so the
table stays about as small as the number of keys plus what was written since the last pass.
SQLite (one process, small tables) counts the job table itself.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import is_postgres
from shared.models import Job, JobCount

# One statement: the deltas a concurrent fold already took are skipped (deleted), the rows
# it wrote are not in this statement's snapshot, so every delta is summed exactly once.
_FOLD = text(
    """
    WITH gone AS (DELETE FROM job_count RETURNING queue, kind, status, n)
    INSERT INTO job_count (queue, kind, status, n)
    SELECT queue, kind, status, sum(n) FROM gone GROUP BY queue, kind, status
    HAVING sum(n) <> 0
    """
)


async def job_counts(session: AsyncSession) -> list[tuple[str, str, str, int]]:
    """(queue, kind, status, count) of every key with jobs."""
    if is_postgres(session):
        stmt = (
            select(JobCount.queue, JobCount.kind, JobCount.status, func.sum(JobCount.n))
            .group_by(JobCount.queue, JobCount.kind, JobCount.status)
            .having(func.sum(JobCount.n) != 0)
        )
    else:
        stmt = select(Job.queue, Job.kind, Job.status, func.count()).group_by(
            Job.queue, Job.kind, Job.status
        )
    rows = await session.execute(stmt)
    return [(queue, kind, status, int(count)) for queue, kind, status, count in rows]


async def fold_job_counts(session: AsyncSession) -> None:
    """Replace the deltas by their sums, one row per key (PostgreSQL; nothing on SQLite)."""
    if is_postgres(session):
        await session.execute(_FOLD)

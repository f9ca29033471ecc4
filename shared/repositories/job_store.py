"""The job store: the one seam through which jobs are written on their hot paths.

Submit (the API's group commit and batches), claim, outcome, lease renewal, the cancel watch,
the reconciler's reads and the result cache (`max_age_s`) all go through a `JobStore`. Two
implementations, chosen once when a process starts (`open_job_store`), after saq's
`Queue.from_url`:

- `SqlJobStore` (job_store_sql.py): SQLAlchemy sessions, portable (SQLite, and PostgreSQL too).
- `PgJobStore` (shared/repositories/job_store_pg.py): on PostgreSQL the statements that run for
  every job (insert, claim, outcome) are single asyncpg statements; the rest is inherited.

Both write the same rows (tests/shared/test_job_store.py runs one parity suite against each).
Every method is its own transaction; nothing here is called inside another one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import create_pg_pool, is_postgres_engine
from shared.repositories.execution import Claim, Outcome, QueuedJob, Released
from shared.repositories.job import NewJob
from shared.repositories.job_store_pg import PgJobStore
from shared.repositories.job_store_sql import SqlJobStore
from shared.repositories.result_cache import CachedResult
from shared.settings import Settings


class JobStore(Protocol):
    """What the API and the workers ask of the job table on their hot paths."""

    async def insert(self, rows: Sequence[dict[str, Any]]) -> list[NewJob]:
        """Insert queued jobs, all or none, committed; returned in order."""
        ...

    async def claim(self, job_id: uuid.UUID, worker_id: str, lease_s: float) -> Claim | None:
        """Move a queued job to running for this worker (fencing); None if not claimable."""
        ...

    async def record_outcome(self, claim: Claim, outcome: Outcome) -> bool:
        """Write an attempt's outcome if the claim still holds (a job's end queues its webhook
        deliveries in the same transaction); False if it was fenced out."""
        ...

    async def park(self, claim: Claim, result: dict[str, Any]) -> bool:
        """Leave a claimed job running with no worker holding it (a crawl, whose frontier
        does the rest); False if the claim was fenced out."""
        ...

    async def record_cancelled(self, claim: Claim) -> None:
        """Close the attempt of a job the user cancelled while it ran."""
        ...

    async def renew_leases(
        self, worker_id: str, lease_s: float, job_ids: Sequence[uuid.UUID]
    ) -> None:
        """Extend the leases of the jobs this worker runs."""
        ...

    async def stale_claims(self, running: Sequence[tuple[uuid.UUID, int]]) -> set[uuid.UUID]:
        """Of the (job id, fence) pairs a worker runs, those no longer its to run."""
        ...

    async def find_orphans(self, limit: int) -> list[tuple[uuid.UUID, int, str | None]]:
        """Running jobs whose lease expired: (id, fence, worker id)."""
        ...

    async def release_orphan(self, job_id: uuid.UUID, fence: int) -> Released | None:
        """Requeue (or fail, out of attempts) a job whose worker died."""
        ...

    async def find_unenqueued(
        self, older_than: datetime, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[QueuedJob]:
        """Queued jobs due since before `older_than`: their enqueue may have been lost."""
        ...

    async def cached_result(
        self, owner_id: uuid.UUID, key: str, newer_than: datetime
    ) -> CachedResult | None:
        """The owner's newest cached result for `key` made after `newer_than`, or None."""
        ...

    async def cache_result(
        self,
        owner_id: uuid.UUID,
        key: str,
        url: str,
        result: dict[str, Any],
        job_id: uuid.UUID | None,
    ) -> datetime:
        """Keep `result` as the owner's newest for `key` (replacing older ones); when."""
        ...

    async def close(self) -> None:
        """Release what the store opened (not the engine: its owner disposes of it)."""
        ...


async def open_job_store(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    pg_connections: int,
) -> JobStore:
    """The store for this process's database, chosen once: PostgreSQL gets `PgJobStore` with
    a pool of up to `pg_connections` plain asyncpg connections (opened lazily)."""
    if not is_postgres_engine(engine):
        return SqlJobStore(sessionmaker)
    pool = await create_pg_pool(settings, pg_connections)
    return PgJobStore(sessionmaker, pool)

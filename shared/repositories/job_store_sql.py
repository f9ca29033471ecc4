"""The job store over SQLAlchemy sessions: portable (SQLite in production; PostgreSQL's
`PgJobStore` inherits what it does not do faster). See shared/repositories/job_store.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import utcnow
from shared.repositories import execution, result_cache
from shared.repositories.execution import Claim, Outcome, QueuedJob, Released
from shared.repositories.job import NewJob, insert_jobs
from shared.repositories.result_cache import CachedResult


class SqlJobStore:
    """The job store over SQLAlchemy sessions (SQLite; the portable base of PgJobStore)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def insert(self, rows: Sequence[dict[str, Any]]) -> list[NewJob]:
        async with self.sessionmaker.begin() as session:
            return await insert_jobs(session, rows)

    async def claim(self, job_id: uuid.UUID, worker_id: str, lease_s: float) -> Claim | None:
        async with self.sessionmaker.begin() as session:
            return await execution.claim_job(session, job_id, worker_id, lease_s)

    async def record_outcome(self, claim: Claim, outcome: Outcome) -> bool:
        async with self.sessionmaker.begin() as session:
            return await execution.record_outcome(session, claim.job.id, claim.fence, outcome)

    async def park(self, claim: Claim, result: dict[str, Any]) -> bool:
        async with self.sessionmaker.begin() as session:
            return await execution.park_job(session, claim.job.id, claim.fence, result)

    async def record_cancelled(self, claim: Claim) -> None:
        async with self.sessionmaker.begin() as session:
            await execution.record_cancelled(session, claim.job.id, claim.fence)

    async def renew_leases(
        self, worker_id: str, lease_s: float, job_ids: Sequence[uuid.UUID]
    ) -> None:
        async with self.sessionmaker.begin() as session:
            await execution.renew_leases(session, worker_id, lease_s, job_ids)

    async def stale_claims(self, running: Sequence[tuple[uuid.UUID, int]]) -> set[uuid.UUID]:
        if not running:
            return set()
        async with self.sessionmaker() as session:
            return await execution.stale_claims(session, running)

    async def find_orphans(self, limit: int) -> list[tuple[uuid.UUID, int, str | None]]:
        async with self.sessionmaker() as session:
            return await execution.find_orphans(session, limit)

    async def release_orphan(self, job_id: uuid.UUID, fence: int) -> Released | None:
        async with self.sessionmaker.begin() as session:
            return await execution.release_orphan(session, job_id, fence)

    async def find_unenqueued(
        self, older_than: datetime, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[QueuedJob]:
        async with self.sessionmaker() as session:
            return await execution.find_unenqueued(session, older_than, after, limit)

    async def cached_result(
        self, owner_id: uuid.UUID, key: str, newer_than: datetime
    ) -> CachedResult | None:
        async with self.sessionmaker() as session:
            return await result_cache.get_cached(session, owner_id, key, newer_than)

    async def cache_result(
        self,
        owner_id: uuid.UUID,
        key: str,
        url: str,
        result: dict[str, Any],
        job_id: uuid.UUID | None,
    ) -> datetime:
        now = utcnow()
        async with self.sessionmaker.begin() as session:
            await result_cache.put_cached(
                session, owner_id=owner_id, key=key, url=url, result=result, job_id=job_id, now=now
            )
        return now

    async def close(self) -> None:
        return None

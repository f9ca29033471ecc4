"""The result cache's rows: read the newest young-enough result, replace it, prune old ones.

One row per owner and key is kept: a new result deletes the older rows of its key in the same
transaction (two workers finishing at once may leave two; the newest is read, and the next
write or retention removes the other).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import is_postgres
from shared.models import ResultCache


@dataclass(frozen=True)
class CachedResult:
    """A result from the cache, and when it was made."""

    result: dict[str, Any]
    created_at: datetime
    job_id: uuid.UUID | None


async def get_cached(
    session: AsyncSession, owner_id: uuid.UUID, key: str, newer_than: datetime
) -> CachedResult | None:
    """The owner's newest result for `key` made after `newer_than`, or None."""
    row = (
        await session.execute(
            select(ResultCache.result, ResultCache.created_at, ResultCache.job_id)
            .where(
                ResultCache.owner_id == owner_id,
                ResultCache.cache_key == key,
                ResultCache.created_at > newer_than,
            )
            .order_by(ResultCache.created_at.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else CachedResult(row.result, row.created_at, row.job_id)


async def put_cached(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    key: str,
    url: str,
    result: dict[str, Any],
    job_id: uuid.UUID | None,
    now: datetime,
) -> None:
    """Store `result` as the owner's newest for `key`, replacing older ones."""
    await session.execute(
        delete(ResultCache).where(
            ResultCache.owner_id == owner_id,
            ResultCache.cache_key == key,
            ResultCache.created_at <= now,
        )
    )
    session.add(
        ResultCache(
            owner_id=owner_id, cache_key=key, url=url, result=result, job_id=job_id, created_at=now
        )
    )


async def delete_old_results(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` cached results made before `cutoff`; how many went."""
    ids = (
        select(ResultCache.id)
        .where(ResultCache.created_at < cutoff)
        .order_by(ResultCache.created_at)
        .limit(limit)
    )
    if is_postgres(session):
        ids = ids.with_for_update(skip_locked=True)
    result = await session.execute(
        delete(ResultCache)
        .where(ResultCache.id.in_(ids.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

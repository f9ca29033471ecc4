"""Clocks that every process agrees on, for decisions that must not depend on one host's clock.

Due schedules are decided on the database server's clock on PostgreSQL (`now()`: the
transaction's start). SQLite runs inside each process, so its clock is that process's; there
the Redis server's `TIME` stands in (the scheduler needs Redis anyway to enqueue).
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import is_postgres
from shared.models import utcnow


async def database_now(session: AsyncSession) -> datetime:
    """PostgreSQL's `now()`; on SQLite, this host's clock (SQLite has no other)."""
    if not is_postgres(session):
        return utcnow()
    value: datetime | None = await session.scalar(select(func.now()))
    assert value is not None
    return value.astimezone(UTC)


async def redis_now(redis: Redis) -> datetime:
    """The Redis server's clock."""
    seconds, micros = await redis.time()
    return datetime.fromtimestamp(int(seconds) + int(micros) / 1_000_000, UTC)


async def shared_now(session: AsyncSession, redis: Redis) -> datetime:
    """The clock all workers share: PostgreSQL's, else (SQLite) the Redis server's."""
    if is_postgres(session):
        return await database_now(session)
    return await redis_now(redis)

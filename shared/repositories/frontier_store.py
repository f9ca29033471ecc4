"""The frontier store: the seam between a crawl's frontier and the database it lives in.

The frontier's SQL (shared/repositories/frontier.py) is portable but for one statement: the
INSERT that skips URLs a crawl already knows (`ON CONFLICT DO NOTHING`), which SQLAlchemy
builds per dialect. The store chooses it once when a process starts (`open_frontier_store`,
like `open_job_store`) and hands out transactions; nothing else asks which database it is on.
The parity suite (tests/shared/test_frontier.py) runs against both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert

from shared.db import is_postgres_engine
from shared.repositories.frontier import InsertIgnoring


def _pg_ignoring(table: Table) -> Insert:
    return pg_insert(table).on_conflict_do_nothing()


def _sqlite_ignoring(table: Table) -> Insert:
    return sqlite_insert(table).on_conflict_do_nothing()


class FrontierStore:
    """Transactions over the frontier, and the dialect's ignoring INSERT for them."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], ignoring: InsertIgnoring
    ) -> None:
        self.sessionmaker = sessionmaker
        self.ignoring = ignoring

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """One transaction, committed when the block ends (rolled back if it raises)."""
        async with self.sessionmaker.begin() as session:
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only."""
        async with self.sessionmaker() as session:
            yield session


def open_frontier_store(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> FrontierStore:
    """The store for this process's database, chosen once."""
    ignoring = _pg_ignoring if is_postgres_engine(engine) else _sqlite_ignoring
    return FrontierStore(sessionmaker, ignoring)

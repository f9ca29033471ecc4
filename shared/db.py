"""The database engine and session factory (PostgreSQL via asyncpg, or SQLite in WAL mode)."""

from __future__ import annotations

import json

import asyncpg
from sqlalchemy import event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from shared.jsonsafe import json_text
from shared.settings import Settings


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; busy_timeout makes writers queue, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_postgres_engine(engine: AsyncEngine) -> bool:
    """Whether the engine talks to PostgreSQL (else SQLite)."""
    return engine.dialect.name == "postgresql"


def is_postgres(session: AsyncSession) -> bool:
    """Whether the session talks to PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An engine for the configured database; SQLite gets WAL and a busy timeout."""
    url = url or settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            json_serializer=json_text,
            connect_args={"timeout": 15},
            pool_pre_ping=True,
            pool_timeout=settings.db_pool_timeout_s,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        json_serializer=json_text,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        # No pre-ping (a round trip per checkout): a connection broken by a server restart
        # fails once, which invalidates the whole pool; callers answer 503 or retry.
        pool_recycle=1800,
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def pg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (`postgresql+asyncpg://...`) as an asyncpg DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json_text, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Nothing to reset: the pool's statements change no session state. (asyncpg itself still
    rolls back an open transaction; its default reset query would cost a round trip per use.)"""


def create_pg_pool(settings: Settings, max_size: int) -> asyncpg.Pool:
    """A plain asyncpg pool (JSON as Python values, the engine's timeouts) for the few
    statements run per job (shared/repositories/job_store_pg.py). It connects
    lazily: `await pool` (no connection yet), then use it; close it with `pool.close()`."""
    return asyncpg.create_pool(
        pg_dsn(settings.resolved_database_url),
        min_size=0,
        max_size=max_size,
        init=_json_codecs,
        reset=_keep_session,
        timeout=5,
        command_timeout=30,
        max_inactive_connection_lifetime=1800,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

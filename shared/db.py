"""The database engine and session factory (PostgreSQL via asyncpg, or SQLite in WAL mode)."""

from __future__ import annotations

import json
import uuid
from typing import Any

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
    connect_args: dict[str, Any] = {"timeout": 5, "command_timeout": 30}
    if settings.database_pgbouncer:
        connect_args.update(PGBOUNCER_CONNECT_ARGS)
    return create_async_engine(
        url,
        json_serializer=json_text,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        # No pre-ping (a round trip per checkout): a connection broken by a server restart
        # fails once, which invalidates the whole pool; callers answer 503 or retry.
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _statement_name() -> str:
    return f"__outrider_{uuid.uuid4().hex}__"


# PgBouncer in transaction pooling mode hands each transaction whichever server connection is
# free, so a statement prepared in one transaction is not there in the next (and asyncpg's
# numbered names, __asyncpg_stmt_1__, collide between the clients sharing a server connection).
# SQLAlchemy runs every statement in a transaction (its asyncpg dialect prepares and executes
# it there): with no caches and unique names, nothing prepared outlives its transaction's
# server connection or is mistaken for another client's. The job store's plain asyncpg pool
# sends single statements outside a transaction: with no statement cache asyncpg uses the
# unnamed statement, parsed, bound and run in one exchange.
PGBOUNCER_CONNECT_ARGS: dict[str, Any] = {
    "statement_cache_size": 0,  # asyncpg's own cache
    "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg dialect's
    "prepared_statement_name_func": _statement_name,
}


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
        # Behind PgBouncer (transaction pooling) a statement prepared on one server
        # connection is unknown on the next: no cache, so the unnamed statement is used.
        statement_cache_size=0 if settings.database_pgbouncer else 100,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

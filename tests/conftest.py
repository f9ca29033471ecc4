"""Test fixtures: a fresh database and a dedicated Redis per run, the API in-process, workers.

With OUTRIDER_TEST_DATABASE_URL (a PostgreSQL server URL) and OUTRIDER_TEST_REDIS_URL set, the
suite runs against them: a database created for this run and dropped afterwards, and the Redis
db named in the URL (flushed at start). Without them: a SQLite file and the embedded Redis.
With OUTRIDER_REQUIRE_SERVICES=1 (CI), a skipped test is a failure.

Rows are not rolled back per test: workers (tasks and processes) must see committed rows. Tests
stay independent by giving each one its own owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import or_, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from migrations import apply as migrate
from shared.db import create_engine, create_sessionmaker
from shared.models import DeliveryStatus, Job, JobStatus, Schedule, WebhookDelivery, utcnow
from shared.settings import Settings
from tests.helpers import TargetServer, start_target_server

TEST_DATABASE_URL = os.environ.get("OUTRIDER_TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("OUTRIDER_TEST_REDIS_URL", "")
REQUIRE_SERVICES = os.environ.get("OUTRIDER_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but OUTRIDER_REQUIRE_SERVICES=1: {report.longrepr}"


SERVICE_FIXTURES = frozenset({"database_url", "redis_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip PostgreSQL-only tests without PostgreSQL; mark every test that needs a database or
    Redis `services` (`make test-fast` runs the others, which need neither)."""
    for item in items:
        if item.get_closest_marker("postgres") and not TEST_DATABASE_URL:
            item.add_marker(pytest.mark.skip(reason="needs OUTRIDER_TEST_DATABASE_URL"))
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


async def _create_pg_database(server_url: str) -> str:
    url = make_url(server_url)
    name = f"outrider_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(db_url: str) -> None:
    url = make_url(db_url)
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    await admin.dispose()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outrider")


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> Iterator[str]:
    if TEST_DATABASE_URL:
        url = asyncio.run(_create_pg_database(TEST_DATABASE_URL))
        migrate.upgrade(url)
        yield url
        asyncio.run(_drop_pg_database(url))
    else:
        url = f"sqlite+aiosqlite:///{data_dir / 'test.db'}"
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url(data_dir: Path) -> Iterator[str]:
    """The suite's Redis (flushed first): OUTRIDER_TEST_REDIS_URL's db, else an embedded one."""
    if TEST_REDIS_URL:
        asyncio.run(_flush(TEST_REDIS_URL))
        yield TEST_REDIS_URL
        return
    from outrider.dev import embedded_redis

    with embedded_redis(Settings(data_dir=data_dir / "redis")) as url:
        yield url


async def _flush(url: str) -> None:
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str, redis_url: str) -> Settings:
    """Settings for in-process tests: loopback allowed, short intervals."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        secret_key="test-secret-key",
        egress_allow_cidrs=["127.0.0.0/8", "::1/128"],
        egress_allowed_ports=["1-65535"],
        worker_heartbeat_s=0.5,
        worker_lease_s=3.0,
        reconcile_interval_s=0.5,
        enqueue_grace_s=1.0,
        worker_shutdown_grace_s=2.0,
        backoff_base_s=0.2,
        backoff_max_s=1.0,
        worker_poll_delay_s=0.02,
        worker_metrics_port=0,  # an OS-assigned port: tests run many workers at once
    )


@pytest.fixture(scope="session")
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process (lifespan included), built once for the session. A test that needs
    other settings builds its own (tests/api/support.py `api_client`)."""
    from api.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


@pytest.fixture(autouse=True)
async def _settle_leftovers(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """What a test leaves behind must not run in a later test's worker: jobs still queued
    (no worker, or a retry's backoff) are cancelled, pending webhook deliveries failed, and
    schedules paused (the fuzzer makes some too). Cancelled rows are skipped by claims, so
    later tests (and their counters) see only their own. What workers learnt about a host
    (robots.txt, politeness) is forgotten: a later test's server may get the same port. A test
    without a database or Redis (a unit test) has nothing to settle and starts no service."""
    uses = set(request.fixturenames)
    if not SERVICE_FIXTURES & uses:
        yield
        return
    # Session-scoped fixtures of the test are set up before this one: these are at hand.
    started = utcnow()
    yield
    if "redis_url" in uses:
        await _forget_hosts(request.getfixturevalue("redis_url"))
    if "database_url" not in uses:
        return
    if "sessionmaker" in uses:
        await _settle(request.getfixturevalue("sessionmaker"), started)
        return
    settings = Settings(
        data_dir=request.getfixturevalue("data_dir"),
        database_url=request.getfixturevalue("database_url"),
    )
    engine = create_engine(settings)
    try:
        await _settle(create_sessionmaker(engine), started)
    finally:
        await engine.dispose()


async def _forget_hosts(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        for pattern in ("outrider:robots:*", "outrider:host:*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


async def _settle(sessionmaker: async_sessionmaker[AsyncSession], started: datetime) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Job)
            .where(
                Job.status == JobStatus.QUEUED,
                or_(Job.created_at >= started, Job.run_after >= started),
            )
            .values(status=JobStatus.CANCELLED, finished_at=utcnow())
        )
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.created_at >= started,
            )
            .values(status=DeliveryStatus.FAILED, next_attempt_at=None)
        )
        await session.execute(
            update(Schedule).where(Schedule.enabled.is_(True)).values(enabled=False)
        )


@contextlib.asynccontextmanager
async def serve_on_loopback(app: Any) -> AsyncIterator[str]:
    """An ASGI app served by uvicorn on a free loopback port; yields its base URL. (An aiohttp
    app: tests/helpers.py `serve_aiohttp`.)"""
    import uvicorn

    from outrider.dev import free_port

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def live_api(settings: Settings) -> AsyncIterator[str]:
    """The API served by uvicorn on a loopback port (for streams, which ASGITransport buffers);
    yields its base URL."""
    from api.app import create_app

    async with serve_on_loopback(create_app(settings)) as url:
        yield url


NewOwner = Callable[[], Awaitable[dict[str, str]]]


@pytest.fixture
def new_owner(sessionmaker: async_sessionmaker[AsyncSession]) -> NewOwner:
    """Make an owner with a key; returns the auth headers."""
    from shared.repositories.owner import create_api_key, get_or_create_owner

    async def make() -> dict[str, str]:
        async with sessionmaker.begin() as session:
            owner = await get_or_create_owner(session, f"owner-{uuid.uuid4().hex[:8]}")
            _, key = await create_api_key(session, owner)
        return {"Authorization": f"Bearer {key}"}

    return make


@pytest.fixture
async def auth(new_owner: NewOwner) -> dict[str, str]:
    return await new_owner()


@pytest.fixture
async def target() -> AsyncIterator[TargetServer]:
    """A local HTTP server that jobs call (see tests/helpers.py for its routes)."""
    async with start_target_server() as server:
        yield server


RunWorker = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


@pytest.fixture
def run_worker(settings: Settings) -> RunWorker:
    """Run an in-process worker for the duration of an `async with` block."""
    from worker.main import serve

    @contextlib.asynccontextmanager
    async def running(
        queue: str = "default", concurrency: int = 20, **overrides: Any
    ) -> AsyncIterator[asyncio.Event]:
        stop = asyncio.Event()
        worker_settings = settings.model_copy(update=overrides) if overrides else settings
        task = asyncio.create_task(serve(worker_settings, queue, concurrency, stop))
        try:
            yield stop
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    return running

"""The FastAPI application: clients in the lifespan, middleware, error handlers, routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import openapi
from api.deps import AppState, PrincipalCache
from api.errors import install_error_handlers
from api.middleware import EdgeMiddleware
from api.routes import (
    agents,
    artifacts,
    crawl_pages,
    dashboard,
    events,
    health,
    jobs,
    metrics,
    queues,
    schedules,
    status,
    usage,
    webhooks,
)
from api.services.live_queues import LiveQueues
from api.services.submit import after_commit
from api.services.submitter import Submitter
from shared import __version__, gc_tuning
from shared.crypto import SecretBox
from shared.db import create_engine, create_sessionmaker
from shared.egress import EgressPolicy
from shared.events import EventPublisher
from shared.logging import configure_logging
from shared.queue import JobQueue, create_redis
from shared.repositories.job_store import open_job_store
from shared.settings import Settings, get_settings

DESCRIPTION = """Outrider takes web jobs for AI agents and data pipelines over HTTP, queues them
in Redis and runs them on horizontally scaled workers, recording every job and attempt in
the database. Authenticate with `Authorization: Bearer <api key>` (`outrider keys create`).
Errors always look like `{"error": {"code", "message", "details"}}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for these settings (default: from the environment)."""
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        redis = create_redis(settings.resolved_redis_url, patient=False)
        streams = create_redis(
            settings.resolved_redis_url,
            patient=False,
            max_connections=settings.sse_max_streams,
            blocking_reads=True,
        )
        sessionmaker = create_sessionmaker(engine)
        # The group commit's writes go through the job store (on PostgreSQL one asyncpg
        # statement on a pool of its own: one flush runs at a time, two connections are plenty).
        store = await open_job_store(settings, engine, sessionmaker, pg_connections=2)
        job_queue = JobQueue(redis, settings.events_retention_s, settings.priority_aging_s)
        app.state.outrider = state = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            store=store,
            job_queue=job_queue,
            submitter=Submitter(store.insert, partial(after_commit, job_queue)),
            policy=EgressPolicy.from_settings(settings),
            box=SecretBox(settings.resolved_secret_key()),
            events=EventPublisher(redis, settings.events_retention_s),
            streams=streams,
            live_queues=LiveQueues(redis),
            principals=PrincipalCache(settings.auth_cache_s),
        )
        revocations = asyncio.create_task(state.principals.watch_revocations(streams))
        gc_tuning.settle()
        try:
            yield
        finally:
            revocations.cancel()
            await asyncio.gather(revocations, return_exceptions=True)
            await state.submitter.close()
            await store.close()
            await streams.aclose(close_connection_pool=True)
            await redis.aclose(close_connection_pool=True)
            await engine.dispose()

    # /docs and /redoc load Swagger UI and ReDoc from the package, not a CDN.
    app = FastAPIOffline(
        title="Outrider",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    openapi.install(app, settings)
    app.add_middleware(EdgeMiddleware, max_bytes=settings.max_request_bytes)
    # Jobs first: a request is matched against the routers in order, and submits are the
    # hottest path (the two routers once ahead of jobs cost each submit about 10% of its CPU).
    routes = (
        jobs,
        crawl_pages,
        health,
        agents,
        artifacts,
        schedules,
        events,
        status,
        queues,
        webhooks,
        usage,
        metrics,
    )
    for module in (*routes, dashboard):
        app.include_router(module.router)
    return app

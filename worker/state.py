"""Per-process worker state: clients created once at startup, and the jobs in flight."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.db import create_engine, create_sessionmaker
from shared.egress import EgressPolicy
from shared.events import EventPublisher
from shared.queue import JobQueue, create_redis
from shared.repositories.frontier_store import FrontierStore, open_frontier_store
from shared.repositories.job_store import JobStore, open_job_store
from shared.settings import Settings
from worker.extract.pool import ParsePool, acquire_shared_pool, release_shared_pool
from worker.host_gate import HostGate
from worker.http_client import OwnerSessions, create_session

if TYPE_CHECKING:
    from worker.browser import BrowserPool, RenderRuntime

BROWSER_QUEUE = "browser"
PG_POOL_SIZE = 10  # the job store's connections (PostgreSQL), besides the engine's pool


@dataclass
class Running:
    """A job this process is executing under `fence`; `task` runs the engine."""

    fence: int
    task: asyncio.Task[object]
    cancelled_by_user: bool = False
    started: float = field(default_factory=time.monotonic)  # the attempt's duration metric


@dataclass
class WorkerState:
    """Everything a job needs that outlives one job."""

    settings: Settings
    queue: str
    worker_id: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    store: JobStore  # claims, outcomes, leases and the reconciler's reads
    job_queue: JobQueue  # the one way jobs get onto the queue
    policy: EgressPolicy
    box: SecretBox
    sessions: OwnerSessions  # outbound HTTP: one connection pool per owner (a tenant wall)
    parse_pool: ParsePool
    events: EventPublisher
    frontier: FrontierStore  # crawls' frontiers
    running: dict[uuid.UUID, Running] = field(default_factory=dict)
    # Crawl pages that ended here and wait to be settled, per crawl (worker/crawl/settle.py).
    settle_queues: dict[uuid.UUID, Any] = field(default_factory=dict)
    concurrency: int = 0  # how many jobs it runs at once (set by serve())
    jobs_done: int = 0  # attempts that ended the job succeeded, in this process
    jobs_failed: int = 0  # attempts that ended the job failed, in this process
    browser: BrowserPool | None = None
    render_runtime: RenderRuntime | None = None  # what render jobs get in their context
    metrics_port: int | None = None  # where this worker serves /metrics (None: it does not)

    @cached_property
    def gate(self) -> HostGate:
        """Admission to hosts (its scripts are hashed once per process, not per job)."""
        return HostGate(self.redis)

    @classmethod
    async def create(cls, settings: Settings, queue: str) -> WorkerState:
        """Open the clients; nothing here blocks on a server being up."""
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        policy = EgressPolicy.from_settings(settings)
        redis = create_redis(settings.resolved_redis_url, patient=True)
        return cls(
            settings=settings,
            queue=queue,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}",
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            # On PostgreSQL its pool connects on first use.
            store=await open_job_store(settings, engine, sessionmaker, PG_POOL_SIZE),
            job_queue=JobQueue(redis, settings.events_retention_s, settings.priority_aging_s),
            policy=policy,
            box=SecretBox(settings.resolved_secret_key()),
            # No per-host cap here: --concurrency bounds the requests, and per-host politeness
            # (Redis, shared by all workers) decides how many one host gets.
            sessions=OwnerSessions(
                lambda proxy: create_session(policy, limit=0, limit_per_host=0, proxy=proxy),
                max_owners=settings.worker_http_max_owners,
                idle_s=settings.worker_http_idle_s,
            ),
            # Shared by every worker of this process; `fetch` workers parse every job, so their
            # children start now, while browser workers start them on their first page.
            parse_pool=acquire_shared_pool(warm=queue == "default"),
            events=EventPublisher(redis, settings.events_retention_s),
            frontier=open_frontier_store(engine, sessionmaker),
        )

    async def start(self) -> None:
        """What running jobs needs beyond the clients: the browser queue launches Chromium (one
        per process) and hands it to the jobs this worker runs."""
        if self.queue == BROWSER_QUEUE:
            from worker.browser import BrowserPool, RenderRuntime

            self.browser = await BrowserPool.start(self.settings, self.policy)
            self.render_runtime = RenderRuntime(self.browser, self.sessionmaker)

    async def close(self) -> None:
        """Close the browser (no Chromium process outlives this), then the clients."""
        await self.events.flush()  # a last try for events held back by an outage
        if self.browser is not None:
            await self.browser.close()
            self.browser = None
        await self.sessions.close()
        await release_shared_pool(self.parse_pool)
        await self.redis.aclose(close_connection_pool=True)
        await self.store.close()
        await self.engine.dispose()

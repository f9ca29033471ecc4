"""Per-process worker state: clients created once at startup, and the jobs in flight."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from dataclasses import dataclass, field

import aiohttp
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.db import create_engine, create_sessionmaker
from shared.egress import EgressPolicy
from shared.queue import create_redis
from shared.settings import Settings
from worker.http_client import create_session


@dataclass
class Running:
    """A job this process is executing under `fence`; `task` runs the engine."""

    fence: int
    task: asyncio.Task[object]
    cancelled_by_user: bool = False


@dataclass
class WorkerState:
    """Everything a job needs that outlives one job."""

    settings: Settings
    queue: str
    worker_id: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    policy: EgressPolicy
    box: SecretBox
    http: aiohttp.ClientSession
    running: dict[uuid.UUID, Running] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, queue: str) -> WorkerState:
        """Open the clients; nothing here blocks on a server being up."""
        engine = create_engine(settings)
        policy = EgressPolicy.from_settings(settings)
        return cls(
            settings=settings,
            queue=queue,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}",
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=create_redis(settings.resolved_redis_url, patient=True),
            policy=policy,
            box=SecretBox(settings.resolved_secret_key()),
            http=create_session(policy),
        )

    async def close(self) -> None:
        """Close the clients."""
        await self.http.close()
        await self.redis.aclose(close_connection_pool=True)
        await self.engine.dispose()

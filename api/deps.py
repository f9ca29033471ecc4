"""Request dependencies: the app's clients, and the caller's identity from the API key."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.services.live_queues import LiveQueues
from api.services.submitter import Submitter
from shared.auth import REVOCATIONS_CHANNEL, hash_key
from shared.crypto import SecretBox
from shared.egress import EgressPolicy
from shared.errors import Unauthorized
from shared.events import EventPublisher
from shared.logging import describe, get_logger
from shared.models import Agent
from shared.queue import JobQueue, QueueClient
from shared.repositories.job_store import JobStore
from shared.repositories.owner import find_owner_by_key
from shared.settings import Settings

log = get_logger(__name__)


@dataclass
class AppState:
    """Clients created once per API process."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: QueueClient
    store: JobStore  # the job table's hot paths (the group commit writes through it)
    job_queue: JobQueue  # the one way jobs get onto the queue
    submitter: Submitter  # group commit of single submissions (app.py)
    policy: EgressPolicy
    box: SecretBox
    events: EventPublisher
    streams: QueueClient  # for SSE readers, which hold a connection while they wait
    live_queues: LiveQueues  # which queues have a live worker (submit answers warn if not)
    open_streams: int = 0  # SSE responses this process is serving now
    principals: PrincipalCache = field(default_factory=lambda: PrincipalCache(0))


@dataclass(frozen=True)
class Principal:
    """Who is calling, and their default agent (loaded with the key: jobs usually need it)."""

    owner_id: uuid.UUID
    owner_name: str
    default_agent: Agent


class PrincipalCache:
    """Keys seen in the last `ttl_s` seconds, so a busy client does not cost a database round
    trip per request. A revoked key (or a changed default agent) takes effect within `ttl_s`;
    0 turns the cache off. Only valid keys are kept, by hash, never the key itself."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        # Bumped by every clear: a look-up that started before a revocation was announced
        # must not put back what it read (the key may have been revoked since).
        self.generation = 0

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key_hash]
            return None
        return entry[1]

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1

    async def watch_revocations(self, redis: Redis) -> None:
        """Forget every remembered key whenever one is revoked (shared/auth.py), for as long
        as it runs; while Redis is unreachable the TTL still bounds what is remembered."""
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(REVOCATIONS_CHANNEL)
                    self.clear()  # anything revoked while we were not listening
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.clear()
            except (RedisError, OSError) as exc:
                log.warning("auth.revocation_watch_failed", error=describe(exc))
                await asyncio.sleep(1.0)

    def put(self, key_hash: str, principal: Principal, generation: int) -> None:
        """Remember a key read from the database when the cache was at `generation`."""
        if self.ttl_s <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare (10,000 live keys in 5 s): start over
        self._entries[key_hash] = (time.monotonic() + self.ttl_s, principal)


async def get_state(request: Request) -> AppState:  # async: no threadpool hop
    state: AppState = request.app.state.outrider
    return state


@contextlib.asynccontextmanager
async def request_session(state: AppState) -> AsyncIterator[AsyncSession]:
    """A session for one request's work, closed however the request ends."""
    session = state.sessionmaker()
    try:
        yield session
    finally:
        try:
            await session.close()
        except (SQLAlchemyError, OSError):
            # The connection died under us (a database restart): the response (a 503) is
            # already decided; drop the connection rather than fail the request a second time.
            with contextlib.suppress(SQLAlchemyError, OSError):
                await session.invalidate()


async def get_session(
    state: Annotated[AppState, Depends(get_state)],
) -> AsyncIterator[AsyncSession]:
    """One session per request (opened lazily: no connection until it is used)."""
    async with request_session(state) as session:
        yield session


bearer = HTTPBearer(auto_error=False, description="An API key from `outrider keys create`.")


async def get_principal(
    state: Annotated[AppState, Depends(get_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The owner of the presented key; 401 for a missing, unknown or revoked key."""
    return await principal_for(state, credentials)


async def authenticate(request: Request) -> tuple[AppState, Principal]:
    """`get_state` and `get_principal` as one plain call, for a route that declares no
    FastAPI parameters (see `json_body`)."""
    state: AppState = request.app.state.outrider
    return state, await principal_for(state, await bearer(request))


async def principal_for(
    state: AppState, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send `Authorization: Bearer <api key>`.")
    key = credentials.credentials
    if len(key) > 200 or not key.isascii():
        raise Unauthorized("Invalid API key.")
    key_hash = hash_key(key)
    principal = state.principals.get(key_hash)
    if principal is not None:
        return principal
    generation = state.principals.generation
    async with request_session(state) as session:
        found = await find_owner_by_key(session, key)
    if found is None:
        raise Unauthorized("Invalid API key.")
    owner, default_agent = found
    principal = Principal(owner_id=owner.id, owner_name=owner.name, default_agent=default_agent)
    state.principals.put(key_hash, principal, generation)
    return principal


StateDep = Annotated[AppState, Depends(get_state)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

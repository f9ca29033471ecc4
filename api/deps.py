"""Request dependencies: the app's clients, and the caller's identity from the API key."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.egress import EgressPolicy
from shared.errors import Unauthorized
from shared.events import EventPublisher
from shared.models import Agent
from shared.queue import QueueClient
from shared.repositories.owner import find_owner_by_key
from shared.settings import Settings


@dataclass
class AppState:
    """Clients created once per API process."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: QueueClient
    policy: EgressPolicy
    box: SecretBox
    events: EventPublisher
    streams: QueueClient  # for SSE readers, which hold a connection while they wait


@dataclass(frozen=True)
class Principal:
    """Who is calling, and their default agent (loaded with the key: jobs usually need it)."""

    owner_id: uuid.UUID
    owner_name: str
    default_agent: Agent


async def get_state(request: Request) -> AppState:  # async: no threadpool hop
    state: AppState = request.app.state.outrider
    return state


async def get_session(
    state: Annotated[AppState, Depends(get_state)],
) -> AsyncIterator[AsyncSession]:
    """One session per request: the key check and the route's work share a connection."""
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


bearer = HTTPBearer(auto_error=False, description="An API key from `outrider keys create`.")


async def get_principal(
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The owner of the presented key; 401 for a missing, unknown or revoked key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send `Authorization: Bearer <api key>`.")
    key = credentials.credentials
    if len(key) > 200 or not key.isascii():
        raise Unauthorized("Invalid API key.")
    found = await find_owner_by_key(session, key)
    if found is None:
        raise Unauthorized("Invalid API key.")
    owner, default_agent = found
    return Principal(owner_id=owner.id, owner_name=owner.name, default_agent=default_agent)


StateDep = Annotated[AppState, Depends(get_state)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

"""Sessions: an agent's named cookie jars and browser storage, sealed at rest.

A row holds one Playwright storage state (`{"cookies": [...], "origins": [...]}`), encrypted
with the agent secrets' key. Every query names the owner as well as the agent: a session is
never read, written or deleted across owners, whatever id a caller has.

Writes are compare-and-set on `version`: a job writes back only if the row is still the one it
read (version 0: there was none), so a job whose session lock lapsed, or a session deleted
while a job ran, is never overwritten by a stale state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.crypto import SecretBox
from shared.models import AgentSession, utcnow


@dataclass(frozen=True)
class StoredSession:
    """A session's state as read, and the version a write-back must name (0: none yet)."""

    state: dict[str, Any]
    version: int


def empty_state() -> dict[str, Any]:
    """The state of a session nothing has written yet."""
    return {"cookies": [], "origins": []}


async def read_session(
    session: AsyncSession, box: SecretBox, owner_id: uuid.UUID, agent_id: uuid.UUID, name: str
) -> StoredSession:
    """The session's state, or an empty one at version 0."""
    row = (
        await session.execute(
            select(AgentSession.state_ciphertext, AgentSession.version).where(
                AgentSession.owner_id == owner_id,
                AgentSession.agent_id == agent_id,
                AgentSession.name == name,
            )
        )
    ).first()
    if row is None:
        return StoredSession(empty_state(), 0)
    state = box.open_json(row.state_ciphertext)
    if not isinstance(state, dict):
        state = empty_state()
    return StoredSession(state, row.version)


async def write_session(
    session: AsyncSession,
    owner_id: uuid.UUID,
    agent_id: uuid.UUID,
    name: str,
    ciphertext: bytes,
    read_version: int,
) -> bool:
    """Store a sealed state if the row is still at `read_version`; False if it moved on (or
    was deleted) meanwhile."""
    now = utcnow()
    if read_version == 0:
        try:
            async with session.begin_nested():
                session.add(
                    AgentSession(
                        owner_id=owner_id,
                        agent_id=agent_id,
                        name=name,
                        state_ciphertext=ciphertext,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await session.flush()
        except IntegrityError:
            return False  # another job created it first
        return True
    result = await session.execute(
        update(AgentSession)
        .where(
            AgentSession.owner_id == owner_id,
            AgentSession.agent_id == agent_id,
            AgentSession.name == name,
            AgentSession.version == read_version,
        )
        .values(state_ciphertext=ciphertext, version=read_version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def delete_session(
    session: AsyncSession, owner_id: uuid.UUID, agent_id: uuid.UUID, name: str
) -> bool:
    """Forget a session; False if the agent has none by that name."""
    result = await session.execute(
        delete(AgentSession)
        .where(
            AgentSession.owner_id == owner_id,
            AgentSession.agent_id == agent_id,
            AgentSession.name == name,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def list_sessions(
    session: AsyncSession, owner_id: uuid.UUID, agent_id: uuid.UUID
) -> list[AgentSession]:
    """The agent's sessions by name (their states stay sealed)."""
    rows = await session.scalars(
        select(AgentSession)
        .where(AgentSession.owner_id == owner_id, AgentSession.agent_id == agent_id)
        .order_by(AgentSession.name)
    )
    return list(rows.all())

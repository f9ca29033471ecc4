"""Agents: a caller's named profiles. Owner-scoped; deletion is soft so jobs keep their agent."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.crypto import SecretBox
from shared.errors import Conflict, NotFound
from shared.models import Agent, utcnow
from shared.repositories.pagination import after_cursor, encode_cursor

PROFILE_FIELDS = (
    "headers",
    "user_agent",
    "timeout_s",
    "max_attempts",
    "backoff_base_s",
    "backoff_max_s",
    "host_rate_per_s",
    "host_concurrency",
    "allowed_domains",
    "blocked_domains",
    "obey_robots",
)


async def get_agent(session: AsyncSession, owner_id: uuid.UUID, agent_id: uuid.UUID) -> Agent:
    """A live agent of this owner; NotFound for a missing or foreign one alike."""
    agent = await session.scalar(
        select(Agent).where(
            Agent.id == agent_id, Agent.owner_id == owner_id, Agent.deleted_at.is_(None)
        )
    )
    if agent is None:
        raise NotFound("Agent not found.")
    return agent


async def get_default_agent(session: AsyncSession, owner_id: uuid.UUID) -> Agent:
    """The owner's default agent (every owner has one)."""
    agent = await session.scalar(
        select(Agent).where(
            Agent.owner_id == owner_id, Agent.is_default.is_(True), Agent.deleted_at.is_(None)
        )
    )
    if agent is None:
        raise NotFound("The owner has no default agent.")
    return agent


async def list_agents(
    session: AsyncSession, owner_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[Agent], str | None]:
    """One page of the owner's agents, newest first."""
    stmt = select(Agent).where(Agent.owner_id == owner_id, Agent.deleted_at.is_(None))
    rows = list(
        (await session.scalars(after_cursor(stmt, Agent.created_at, Agent.id, cursor, limit))).all()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


def _apply_secrets(agent: Agent, box: SecretBox, changes: dict[str, str | None]) -> None:
    current = box.open(agent.secrets_ciphertext)
    for name, value in changes.items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    agent.secrets_ciphertext = box.seal(current) if current else None
    agent.secret_names = sorted(current)


async def _flush_unique(session: AsyncSession) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("An agent with this name already exists.", code="agent_exists") from exc


async def create_agent(
    session: AsyncSession,
    owner_id: uuid.UUID,
    box: SecretBox,
    name: str,
    profile: dict[str, Any],
    secrets: dict[str, str],
) -> Agent:
    """A new agent; its name is unique among the owner's live agents."""
    agent = Agent(id=uuid.uuid4(), owner_id=owner_id, name=name, secret_names=[])
    for field in PROFILE_FIELDS:
        if field in profile:
            setattr(agent, field, profile[field])
    _apply_secrets(agent, box, dict(secrets))
    session.add(agent)
    await _flush_unique(session)
    return agent


async def update_agent(
    session: AsyncSession,
    agent: Agent,
    box: SecretBox,
    changes: dict[str, Any],
    secrets: dict[str, str | None] | None,
) -> Agent:
    """Apply a partial update; a secret set to null is removed."""
    for field, value in changes.items():
        if field == "name" or field in PROFILE_FIELDS:
            setattr(agent, field, value)
    if secrets:
        _apply_secrets(agent, box, secrets)
    agent.updated_at = utcnow()
    await _flush_unique(session)
    return agent


async def delete_agent(session: AsyncSession, agent: Agent) -> None:
    """Soft-delete; the default agent cannot be deleted."""
    if agent.is_default:
        raise Conflict("The default agent cannot be deleted.", code="default_agent")
    agent.deleted_at = utcnow()
    await session.flush()

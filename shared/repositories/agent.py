"""Agents: a caller's named profiles. Owner-scoped; deletion is soft so jobs keep their agent."""

from __future__ import annotations

import uuid
from secrets import token_urlsafe
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.crypto import SecretBox
from shared.errors import Conflict, NotFound
from shared.ids import new_id
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
    "max_concurrency",
    "allowed_domains",
    "blocked_domains",
    "obey_robots",
    "webhook_url",
    "stealth",
    "locale",
    "timezone",
    "proxies",
    "proxy_rotation",
)
# The webhook secret's key in its sealed mapping (shared/crypto.py seals mappings).
WEBHOOK_SECRET = "webhook_secret"  # noqa: S105 - a key name, not a secret


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


def new_webhook_secret() -> str:
    """A fresh secret to sign webhooks with (256 bits, URL-safe)."""
    return token_urlsafe(32)


def seal_webhook_secret(box: SecretBox, secret: str) -> bytes:
    """Encrypt a webhook secret for `agent.webhook_secret_ciphertext`."""
    return box.seal({WEBHOOK_SECRET: secret})


def open_webhook_secret(box: SecretBox, ciphertext: bytes) -> str:
    """Decrypt a webhook secret (RuntimeError if OUTRIDER_SECRET_KEY changed)."""
    return box.open(ciphertext)[WEBHOOK_SECRET]


async def set_webhook_secret(
    session: AsyncSession, agent: Agent, box: SecretBox, secret: str | None = None
) -> str:
    """Give the agent a webhook secret (`secret`, or a new one); returns it. The old one stops
    working at once, for retries of earlier deliveries too."""
    secret = secret or new_webhook_secret()
    agent.webhook_secret_ciphertext = seal_webhook_secret(box, secret)
    agent.updated_at = utcnow()
    await session.flush()
    return secret


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
    webhook_secret: str | None = None,
) -> Agent:
    """A new agent; its name is unique among the owner's live agents."""
    agent = Agent(id=new_id(), owner_id=owner_id, name=name, secret_names=[])
    if webhook_secret is not None:
        agent.webhook_secret_ciphertext = seal_webhook_secret(box, webhook_secret)
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


async def agent_limits(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Every agent's `max_concurrency`, where set (the take script's limits); a deleted
    agent's too, since its queued jobs still run."""
    rows = await session.execute(
        select(Agent.id, Agent.max_concurrency).where(Agent.max_concurrency.is_not(None))
    )
    return {agent_id: limit for agent_id, limit in rows.all() if limit is not None}

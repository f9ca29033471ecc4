"""Owners and their API keys."""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import display_prefix, generate_key, hash_key
from shared.ids import new_id
from shared.models import Agent, ApiKey, Owner, utcnow

DEFAULT_AGENT_NAME = "default"


async def get_or_create_owner(session: AsyncSession, name: str) -> Owner:
    """The owner with this name, created with its default agent if new."""
    owner = await session.scalar(select(Owner).where(Owner.name == name))
    if owner is not None:
        return owner
    owner = Owner(id=new_id(), name=name)
    session.add(owner)
    await session.flush()
    session.add(Agent(owner_id=owner.id, name=DEFAULT_AGENT_NAME, is_default=True))
    await session.flush()
    return owner


async def create_api_key(session: AsyncSession, owner: Owner) -> tuple[ApiKey, str]:
    """A new key for the owner; the plaintext is returned once and never stored."""
    plaintext = generate_key()
    key = ApiKey(owner_id=owner.id, key_hash=hash_key(plaintext), prefix=display_prefix(plaintext))
    session.add(key)
    await session.flush()
    return key, plaintext


# Built once: every authenticated request runs it.
_OWNER_BY_KEY = (
    select(Owner, Agent)
    .join(ApiKey, ApiKey.owner_id == Owner.id)
    .join(
        Agent,
        and_(Agent.owner_id == Owner.id, Agent.is_default.is_(True), Agent.deleted_at.is_(None)),
    )
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


async def find_owner_by_key(session: AsyncSession, plaintext: str) -> tuple[Owner, Agent] | None:
    """The owner of an active (unrevoked) key and its default agent (one query), or None."""
    result = await session.execute(_OWNER_BY_KEY, {"key_hash": hash_key(plaintext)})
    row = result.first()
    return (row[0], row[1]) if row is not None else None


async def revoke_api_key(session: AsyncSession, key_or_id: str) -> int:
    """Revoke a key given as plaintext or as its id; returns how many keys were revoked."""
    condition = ApiKey.key_hash == hash_key(key_or_id)
    with contextlib.suppress(ValueError):
        condition = ApiKey.id == uuid.UUID(key_or_id)
    result = await session.execute(
        update(ApiKey).where(condition, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]

"""Owners and their API keys."""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import display_prefix, generate_key, hash_key
from shared.models import Agent, ApiKey, Owner, utcnow

DEFAULT_AGENT_NAME = "default"


async def get_or_create_owner(session: AsyncSession, name: str) -> Owner:
    """The owner with this name, created with its default agent if new."""
    owner = await session.scalar(select(Owner).where(Owner.name == name))
    if owner is not None:
        return owner
    owner = Owner(id=uuid.uuid4(), name=name)
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


async def find_owner_by_key(session: AsyncSession, plaintext: str) -> Owner | None:
    """The owner of an active (unrevoked) key, or None."""
    return await session.scalar(
        select(Owner)
        .join(ApiKey, ApiKey.owner_id == Owner.id)
        .where(ApiKey.key_hash == hash_key(plaintext), ApiKey.revoked_at.is_(None))
    )


async def revoke_api_key(session: AsyncSession, key_or_id: str) -> int:
    """Revoke a key given as plaintext or as its id; returns how many keys were revoked."""
    condition = ApiKey.key_hash == hash_key(key_or_id)
    with contextlib.suppress(ValueError):
        condition = ApiKey.id == uuid.UUID(key_or_id)
    result = await session.execute(
        update(ApiKey).where(condition, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]

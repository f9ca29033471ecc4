"""API keys: random, prefixed, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

from redis.asyncio import Redis
from redis.exceptions import RedisError

KEY_PREFIX = "ork_"


def generate_key() -> str:
    """A new key: `ork_` and 43 URL-safe characters (256 bits of randomness)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form; keys are high-entropy, so a plain SHA-256 is enough."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """The first characters, safe to show in listings to recognise a key."""
    return key[: len(KEY_PREFIX) + 6]


REVOCATIONS_CHANNEL = "outrider:auth:revoked"
"""Redis pub/sub channel: a message means "a key was revoked", and API processes drop the keys
they remember (api/deps.py PrincipalCache) at once instead of when their cache entry expires."""


async def announce_revocation(redis: Redis) -> bool:
    """Tell running API processes a key was revoked; False if Redis could not be reached (they
    then notice within OUTRIDER_AUTH_CACHE_S)."""
    try:
        await redis.publish(REVOCATIONS_CHANNEL, b"1")
    except (RedisError, OSError):
        return False
    return True

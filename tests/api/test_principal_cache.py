"""The API's cache of valid keys (api/deps.py PrincipalCache) and revocations."""

from __future__ import annotations

import uuid
from typing import Any, cast

from api.deps import Principal, PrincipalCache


def _principal() -> Principal:
    return Principal(owner_id=uuid.uuid4(), owner_name="o", default_agent=cast(Any, None))


def test_a_lookup_that_began_before_a_revocation_is_not_remembered() -> None:
    cache = PrincipalCache(ttl_s=300)
    began = cache.generation  # a request reads the key's row...
    cache.clear()  # ...a revocation is announced meanwhile...
    cache.put("hash", _principal(), began)  # ...and what it read must not come back
    assert cache.get("hash") is None
    cache.put("hash", _principal(), cache.generation)
    assert cache.get("hash") is not None
    cache.clear()
    assert cache.get("hash") is None

"""Worker liveness keys in Redis: one per worker process, expiring unless renewed."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

LIVENESS_PREFIX = "outrider:worker:"


def liveness_key(worker_id: str) -> str:
    """The Redis key that says this worker is alive."""
    return LIVENESS_PREFIX + worker_id


async def live_workers(redis: Redis, id_prefix: str = "") -> list[dict[str, Any]]:
    """The live workers whose id starts with `id_prefix` (SCAN, never KEYS)."""
    workers = []
    async for key in redis.scan_iter(match=f"{LIVENESS_PREFIX}{id_prefix}*", count=500):
        raw = await redis.get(key)
        if raw:
            workers.append(json.loads(raw))
    return workers

"""Worker liveness in Redis: a key per worker process, expiring unless renewed, and a registry.

The registry (a sorted set of worker ids scored by when their key expires) is what listing
reads: one ZRANGE and one MGET, however many other keys Redis holds (no KEYS, no SCAN). A
worker that dies stops renewing; its key expires and the next listing prunes it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

LIVENESS_PREFIX = "outrider:worker:"
REGISTRY_KEY = "outrider:workers"


def liveness_key(worker_id: str) -> str:
    """The Redis key that says this worker is alive."""
    return LIVENESS_PREFIX + worker_id


async def publish_liveness(redis: Redis, info: dict[str, Any], ttl_s: float) -> None:
    """Say this worker is alive for the next `ttl_s` (its key and its registry entry)."""
    worker_id = str(info["worker_id"])
    ttl_ms = int(ttl_s * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(liveness_key(worker_id), json.dumps(info), px=ttl_ms)
        pipe.zadd(REGISTRY_KEY, {worker_id: time.time() * 1000 + ttl_ms})
        await pipe.execute()


async def remove_liveness(redis: Redis, worker_id: str) -> None:
    """A graceful shutdown: remove this worker's own entry, and nothing else."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(liveness_key(worker_id))
        pipe.zrem(REGISTRY_KEY, worker_id)
        await pipe.execute()


async def live_workers(redis: Redis, id_prefix: str = "") -> list[dict[str, Any]]:
    """The live workers (whose id starts with `id_prefix`), oldest first."""
    await redis.zremrangebyscore(REGISTRY_KEY, "-inf", time.time() * 1000)
    ids = [
        raw.decode() if isinstance(raw, bytes) else str(raw)
        for raw in await redis.zrange(REGISTRY_KEY, 0, -1)
    ]
    ids = [worker_id for worker_id in ids if worker_id.startswith(id_prefix)]
    if not ids:
        return []
    payloads = await redis.mget([liveness_key(worker_id) for worker_id in ids])
    workers = [json.loads(raw) for raw in payloads if raw]
    workers.sort(key=lambda info: (str(info.get("started_at")), str(info.get("worker_id"))))
    return workers

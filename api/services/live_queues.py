"""Which queues have a live worker, read from the worker registry at most every few seconds.

A submit to a queue nobody serves is still accepted (a worker may start later, and the job
waits safely in the ledger), but its answer says so: a `Procfile` or deployment without a
browser worker otherwise leaves `render` jobs queued with no hint why.
"""

from __future__ import annotations

import time

from redis.exceptions import RedisError

from shared.liveness import live_workers
from shared.logging import describe, get_logger
from shared.queue import QueueClient

log = get_logger(__name__)


class LiveQueues:
    """A cached view of the queues that have at least one live worker."""

    def __init__(self, redis: QueueClient, ttl_s: float = 2.0) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._served: set[str] | None = None
        self._read_at = 0.0

    async def unserved(self, queues: set[str]) -> list[str]:
        """The queues among `queues` that no live worker serves now (none if unknown)."""
        if self._served is None or time.monotonic() - self._read_at > self.ttl_s:
            self._read_at = time.monotonic()
            try:
                self._served = {str(info.get("queue")) for info in await live_workers(self.redis)}
            except RedisError as exc:  # the submit itself reports Redis trouble, not this
                log.warning("api.live_queues_unknown", error=describe(exc))
                return []
        return sorted(queues - self._served)

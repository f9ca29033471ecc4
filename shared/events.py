"""Job events: every state change of an owner's jobs, in order, in one Redis stream per owner.

A stream entry's id (`<ms>-<seq>`) is the Server-Sent Events id, so a client reconnecting with
`Last-Event-ID` reads on from exactly where it stopped. Streams are trimmed to the last
`events_retention_s` (at least 10 minutes) on every write, so they never grow without bound.

Events are written after the transition they describe has committed; the job row stays the
truth. `queued` is written by the enqueue script itself (shared/queue.py `JobQueue`), in the same
atomic step that puts the job in the queue, so it always precedes the job's `started`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.jsonsafe import json_text
from shared.logging import describe, get_logger

log = get_logger(__name__)

STREAM_PREFIX = "outrider:events:"
EVENT_TYPES = ("queued", "started", "progress", "retrying", "succeeded", "failed", "cancelled")
TERMINAL_EVENTS = frozenset({"succeeded", "failed", "cancelled"})
PUBLISH_TIMEOUT_S = 2.0
SEND_LINGER_S = 0.005
MAX_PENDING = 100_000


class JobLike(Protocol):
    """What an event needs to know about its job (a Job row, or a claim's copy of one)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def owner_id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempts(self) -> int: ...


@functools.lru_cache(maxsize=4096)  # a batch of 1,000 jobs has one owner
def stream_key(owner_id: uuid.UUID | str) -> str:
    """The Redis stream holding one owner's job events."""
    return f"{STREAM_PREFIX}{owner_id}"


@dataclass(slots=True)  # not frozen: a frozen init costs 4x, and a batch builds 1,000 of them
class JobEvent:
    """One state change (or progress report) of one job."""

    type: str
    job_id: uuid.UUID
    owner_id: uuid.UUID
    kind: str
    queue: str
    attempt: int
    status: str
    at: float = field(default_factory=time.time)
    reason: str | None = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    run_after: float | None = None

    @classmethod
    def of(cls, job: JobLike, type_: str, status: str, **extra: Any) -> JobEvent:
        """An event about `job`, which is now in `status`."""
        return cls(
            type=type_,
            job_id=job.id,
            owner_id=job.owner_id,
            kind=job.kind,
            queue=job.queue,
            attempt=job.attempts,
            status=status,
            **extra,
        )

    def encode(self) -> str:
        """The JSON stored in the stream (and sent as the SSE `data`)."""
        body: dict[str, Any] = {
            "type": self.type,
            "job_id": str(self.job_id),
            "kind": self.kind,
            "queue": self.queue,
            "status": self.status,
            "attempt": self.attempt,
            "at": round(self.at, 3),
        }
        for name in ("reason", "error", "progress"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.run_after is not None:
            body["run_after"] = round(self.run_after, 3)
        return json_text(body)


def min_id(retention_s: float) -> str:
    """The oldest stream id to keep."""
    return str(int((time.time() - retention_s) * 1000))


def retention_ms(retention_s: float) -> str:
    """How long an idle owner's stream lives on after its last event."""
    return str(int(retention_s * 2 * 1000))


async def publish(redis: Redis, events: Sequence[JobEvent], retention_s: float) -> None:
    """Append events to their owners' streams in one pipelined round trip (order kept)."""
    if not events:
        return
    trim_to = min_id(retention_s)
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            key = stream_key(event.owner_id)
            pipe.xadd(key, {"e": event.encode()}, minid=trim_to, approximate=True)
            pipe.pexpire(key, int(retention_ms(retention_s)))
        await pipe.execute()


class EventPublisher:
    """A process's way to publish: events are kept, in order, until Redis has them.

    Concurrent publishers share round trips (whoever holds the lock sends everything pending),
    and a Redis outage delays events instead of dropping them; `flush` is retried on the next
    publish and by the worker's heartbeat.
    """

    def __init__(self, redis: Redis, retention_s: float) -> None:
        self.redis = redis
        self.retention_s = retention_s
        self._pending: deque[JobEvent] = deque()
        self._lock = asyncio.Lock()
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, events: Iterable[JobEvent]) -> None:
        """Queue events for Redis and return at once: a background task sends whatever is
        pending in one pipelined round trip, so a busy worker sends many jobs' events at a
        time. Order is kept (one queue, one sender)."""
        self._pending.extend(events)
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all())

    async def _send_all(self) -> None:
        # Linger a moment: a busy worker's events then go by the dozen, not one pipeline (and
        # redis-py's per-call overhead) per event. Nothing waits for them.
        await asyncio.sleep(SEND_LINGER_S)
        while self._pending:
            waiting = len(self._pending)
            await self.flush()
            if len(self._pending) >= waiting:
                return  # Redis is unreachable: the next publish (or the heartbeat) tries again

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch = list(self._pending)
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    await publish(self.redis, batch, self.retention_s)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("events.publish_delayed", pending=len(batch), error=describe(exc))
                return
            for _ in batch:
                self._pending.popleft()

    @property
    def pending(self) -> int:
        return len(self._pending)


def decode(entry_id: bytes | str, fields: dict[Any, Any]) -> tuple[str, dict[str, Any]]:
    """A stream entry as (SSE id, event)."""
    raw = fields.get(b"e") or fields.get("e") or "{}"
    ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    event: dict[str, Any] = json.loads(raw)
    event["id"] = ident
    return ident, event


async def read_after(
    redis: Redis, owner_id: uuid.UUID, after: str, *, block_ms: int | None, count: int = 500
) -> list[tuple[str, dict[str, Any]]]:
    """Events of an owner after stream id `after`, waiting up to `block_ms` for the first."""
    reply = await redis.xread({stream_key(owner_id): after}, count=count, block=block_ms)
    if not reply:
        return []
    _, entries = reply[0]
    return [decode(entry_id, fields) for entry_id, fields in entries]


async def last_id(redis: Redis, owner_id: uuid.UUID) -> str:
    """The id of an owner's newest event ("0-0" if none): reading after it waits for new ones."""
    newest = await redis.xrevrange(stream_key(owner_id), count=1)
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse_event_id(value: str) -> str | None:
    """A valid stream id from a client's Last-Event-ID, else None."""
    ms, _, seq = value.strip().partition("-")
    if not ms.isdigit() or len(ms) > 15 or (seq and (not seq.isdigit() or len(seq) > 15)):
        return None
    return f"{int(ms)}-{int(seq or 0)}"


def id_at(timestamp_s: float) -> str:
    """The stream position just before `timestamp_s`."""
    return f"{max(int(timestamp_s * 1000), 0)}-0"

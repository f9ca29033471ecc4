"""The queue seam: the only place outside worker/ that knows arq's Redis layout.

Redis carries job ids only (JSON-serialized, never pickled); the `job` row is the truth.
`JobQueue` is the one way in: `enqueue` (or `prepare` then `send`, to build the script calls
while something else is awaited) puts committed jobs on their queues and announces each one
that enters (a `queued` event in its owner's stream, shared/events.py) in the same atomic step;
`requeue_now` makes orphaned jobs runnable at once. Enqueueing is idempotent: a job id already
queued or running in arq is left alone.

A job's arq payload names its agent (`agent_id`), so a worker's take script can hold an agent
to its `max_concurrency` (worker/queue_worker.py): the limits live in one Redis hash
(`AGENT_LIMITS_KEY`, agent id -> limit), written by the API when an agent changes and
rewritten from the database by the reconciler; each capped agent's running jobs are leases in
a sorted set (`agent_running_key`: token -> expiry in ms of Redis' clock).

Redis full (`maxmemory` reached with `noeviction`) refuses every write that needs memory with an
OOM error. A refused enqueue marks the queue full; `has_room` then answers False (the API
refuses new jobs with 503 `queue_full`) until a small probe write, at most one a second per
process, succeeds again. Rows committed before that are not lost: the reconciler enqueues them
once Redis has room.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.events import JobEvent, JobLike, min_id, retention_ms, stream_key

QueueClient = ArqRedis
"""The Redis client type callers outside this seam may name."""

JOB_FUNCTION = "run_job"
"""The single arq function every job runs through (worker/runner.py)."""

JOB_EXPIRES_MS = 7 * 24 * 3600 * 1000
ROOM_PROBE_KEY = "outrider:queue:room-probe"
ROOM_PROBE_S = 1.0  # while Redis is full, how often a process asks whether it has room again
ENQUEUE_CHUNK = 500  # jobs per script call: a call blocks Redis while it runs

# Enqueue jobs unless arq already holds them, and announce each one that enters the queue in the
# same atomic step, so the announcement precedes any `started`. One call carries the jobs of one
# queue and one stream (a batch is one call): per job, only its id and event.
# With `take_over` set (the reconciler, for rows queued and due for a while), an in-progress mark
# older than `take_over` ms is stale: a worker took the id from arq but died before claiming the
# row. The mark would keep arq from running the job again until it expires, so it is removed and
# the job made ready. A younger mark is a live worker's that has not claimed the row yet (a
# backlog): it is left alone. Our workers' marks hold the Redis time they were set at
# (worker/queue_worker.py); stock arq's hold 1, so they count as old.
# Keys are built from prefixes (standalone Redis, as arq itself requires).
# ARGV: the fields of EnqueueArgs, in order; then per job its id, its event ('' for none),
# when it is due in epoch ms ('' for the common score: now; a delayed job waits in arq's
# sorted set until then, as a retry's backoff does) and its agent's id (in its payload).
_ENQUEUE_LUA = """
local job_prefix, mark_prefix, score, job_ttl, keep_after, stream_ttl, take_over_ms,
      payload_head, payload_mid, payload_tail, queue, stream = unpack(ARGV, 1, 12)
local added, announced = 0, false
local now, take_over = 0, tonumber(take_over_ms)
if take_over then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
for i = 13, #ARGV, 4 do
  local id, event, agent = ARGV[i], ARGV[i + 1], ARGV[i + 3]
  local due = ARGV[i + 2] ~= '' and ARGV[i + 2] or score
  local job_key, mark = job_prefix .. id, mark_prefix .. id
  local stale = false
  if take_over then
    local at = redis.call('GET', mark)
    if at then
      local at_ms = tonumber(at)
      stale = at_ms == nil or now - at_ms > take_over
    end
  end
  if stale then
    redis.call('DEL', mark)
    redis.call('ZADD', queue, due, id)
    added = added + 1
  elseif redis.call('EXISTS', job_key) == 0 then
    redis.call('SET', job_key, payload_head .. id .. payload_mid .. agent .. payload_tail,
               'PX', job_ttl)
    if event ~= '' then
      redis.call('XADD', stream, 'MINID', '~', keep_after, '*', 'e', event)
      announced = true
    end
    redis.call('ZADD', queue, due, id)
    added = added + 1
  end
end
if announced then
  redis.call('PEXPIRE', stream, stream_ttl)
end
return added
"""

# Make an orphaned job (its worker died) runnable now. KEYS: job, in-progress mark, queue.
_REQUEUE_LUA = """
local job_key, mark, queue = KEYS[1], KEYS[2], KEYS[3]
local id, payload, score, job_ttl = unpack(ARGV, 1, 4)
redis.call('DEL', mark)
if redis.call('EXISTS', job_key) == 0 then
  redis.call('SET', job_key, payload, 'PX', job_ttl)
end
redis.call('ZADD', queue, score, id)
return 1
"""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether Redis refused a write for want of memory (`maxmemory` with `noeviction`). A
    refusal inside a script may come as a script error that quotes the OOM reply."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and "OOM command not allowed" in str(exc)
    )


def queue_key(queue: str) -> str:
    """The arq queue (a sorted set) for one of our queue names."""
    return f"{default_queue_name}:{queue}"


AGENT_LIMITS_KEY = "outrider:agent:max_concurrency"
"""A hash: agent id -> its `max_concurrency` (agents without one are absent)."""


def agent_running_key(agent_id: str) -> str:
    """A capped agent's running jobs: a sorted set of lease tokens -> expiry (ms)."""
    return f"outrider:agent:{agent_id}:running"


# Replace a whole hash (the reconciler's rewrites from the database). ARGV: field, value pairs.
_REPLACE_LIMITS_LUA = """
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return #ARGV / 2
"""


# One agent's limit; '' removes it. ARGV: agent id, limit.
_SET_LIMIT_LUA = """
if ARGV[2] == '' then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
"""


async def set_agent_limit(redis: Redis, agent_id: uuid.UUID, limit: int | None) -> None:
    """Record (or, with None, remove) an agent's `max_concurrency` for the take script."""
    args = [str(agent_id), "" if limit is None else str(limit)]
    await redis.register_script(_SET_LIMIT_LUA)(keys=[AGENT_LIMITS_KEY], args=args)


async def replace_agent_limits(redis: Redis, limits: dict[uuid.UUID, int]) -> None:
    """Make the limits hash exactly `limits`, atomically (the database is the truth)."""
    args = [str(part) for pair in limits.items() for part in pair]
    script = redis.register_script(_REPLACE_LIMITS_LUA)
    await script(keys=[AGENT_LIMITS_KEY], args=args)


OWNER_QUEUED_KEY = "outrider:owner:queued"
"""A hash: owner id -> jobs queued (crawl pages aside), for OUTRIDER_OWNER_MAX_QUEUED: the
API's quota check adds submissions (api/services/quotas.py); the reconciler rewrites it."""


async def replace_owner_queued(redis: Redis, counts: dict[uuid.UUID, int]) -> None:
    """Make the owners' queued counts exactly `counts`, atomically."""
    args = [str(part) for pair in counts.items() for part in pair]
    script = redis.register_script(_REPLACE_LIMITS_LUA)
    await script(keys=[OWNER_QUEUED_KEY], args=args)


def paused_key(queue: str) -> str:
    """Set while the queue is paused: workers take none of its jobs (worker/queue_worker.py)."""
    return f"outrider:queue:paused:{queue}"


async def set_paused(redis: Redis, queue: str, paused: bool) -> None:
    """Pause or resume a queue. Kept in Redis, with the queue itself (AOF in compose and
    `outrider dev`): it holds across API and worker restarts."""
    if paused:
        await redis.set(paused_key(queue), "1")
    else:
        await redis.delete(paused_key(queue))


async def paused_queues(redis: Redis, queues: Sequence[str]) -> set[str]:
    """Which of `queues` are paused now."""
    flags = await redis.mget([paused_key(queue) for queue in queues]) if queues else []
    return {queue for queue, flag in zip(queues, flags, strict=True) if flag}


def serialize(data: dict[str, Any]) -> bytes:
    """arq job serializer: JSON, so Redis never holds a pickle."""
    return json.dumps(data, separators=(",", ":")).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    """arq job deserializer."""
    value: dict[str, Any] = json.loads(data)
    return value


def create_redis(
    url: str, *, patient: bool, max_connections: int = 100, blocking_reads: bool = False
) -> ArqRedis:
    """A client that connects lazily. Patient clients (workers) retry forever through an
    outage; impatient ones (the API) fail fast so a request can answer 503. A client for
    blocking reads (SSE's XREAD BLOCK) has no socket timeout: its commands bound their wait."""
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), -1 if patient else 1)
    pool = ConnectionPool.from_url(
        url,
        max_connections=max_connections,
        socket_connect_timeout=2.0 if patient else 1.0,
        socket_timeout=None if patient or blocking_reads else 5.0,
        socket_keepalive=True,
        health_check_interval=15,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
    )
    return ArqRedis(
        connection_pool=pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_key("default"),
    )


def _payload(job_id: str, agent_id: str) -> str:
    now_ms = int(time.time() * 1000)
    kwargs = {"agent_id": agent_id}  # read by the take script (worker/queue_worker.py)
    return serialize({"t": 1, "f": JOB_FUNCTION, "a": [job_id], "k": kwargs, "et": now_ms}).decode()


def _agent(job: JobLike) -> str:
    agent_id = getattr(job, "agent_id", None)
    return "" if agent_id is None else str(agent_id)


def _score_ms(job: JobLike, now: float, aging_s: float) -> str:
    """A job's score in its arq queue, whose lowest due scores are taken first: a delayed job's
    due time; else now, less `priority / 9` of the aging time, so a higher priority goes first
    and any job that has waited `aging_s` is ahead of every newer one (no starvation)."""
    run_after = getattr(job, "run_after", None)
    if run_after is not None and run_after.timestamp() > now:
        return str(int(run_after.timestamp() * 1000))
    priority = getattr(job, "priority", None)
    if priority is None:
        return ""  # the call's score: now
    return str(int((now - aging_s * priority / 9) * 1000))


@dataclass(frozen=True)
class EnqueueArgs:
    """The enqueue script's named arguments (its ARGV, in this order), before the jobs."""

    job_prefix: str
    mark_prefix: str
    score: str  # when the jobs are due, in epoch ms
    job_ttl_ms: str
    keep_after_id: str  # stream entries older than this go
    stream_ttl_ms: str  # an idle stream expires after this
    take_over_ms: str  # '' for none: see the script
    payload_head: str  # the arq payload of a job is head + id + mid + agent id + tail
    payload_mid: str
    payload_tail: str
    queue: str
    stream: str  # '' when nothing is announced


@dataclass(frozen=True)
class PreparedEnqueue:
    """Script calls built by `JobQueue.prepare`, for `JobQueue.send`: each is the ARGV of
    one call (the jobs of one queue and stream, at most ENQUEUE_CHUNK)."""

    calls: tuple[tuple[str, ...], ...]
    count: int  # jobs


class JobQueue:
    """Puts committed jobs on their arq queues, announced. One per process."""

    def __init__(
        self, redis: ArqRedis, events_retention_s: float, priority_aging_s: float = 60.0
    ) -> None:
        self.redis = redis
        self.events_retention_s = events_retention_s
        self.aging_s = priority_aging_s
        self._enqueue = redis.register_script(_ENQUEUE_LUA)
        self._requeue = redis.register_script(_REQUEUE_LUA)
        self.full = False  # an enqueue was refused for want of memory, and no probe since
        self._next_probe = 0.0

    async def has_room(self) -> bool:
        """False while Redis is out of memory (`maxmemory` with `noeviction`): an enqueue was
        refused and the last probe too. Free while Redis has room (nothing is asked); while
        it is full, one small write a second tells when it has room again. A Redis that cannot
        be reached counts as having room: jobs are accepted and the reconciler enqueues them."""
        if not self.full:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + ROOM_PROBE_S
        try:
            await self.redis.set(ROOM_PROBE_KEY, b"1", px=int(ROOM_PROBE_S * 1000))
        except (RedisError, OSError) as exc:
            if is_out_of_memory(exc):
                return False
        self.full = False
        return True

    def _refused(self) -> None:
        if not self.full:
            self.full = True
            self._next_probe = time.monotonic() + ROOM_PROBE_S

    def prepare(
        self,
        jobs: Sequence[JobLike],
        reason: str,
        *,
        take_over_after_s: float | None = None,
        announce: bool = True,
    ) -> PreparedEnqueue:
        """The script calls that enqueue `jobs` now, each announced with a `queued` event
        (`reason` says why) as it enters its queue, in the given order within a stream; ids
        already in arq are skipped. `take_over_after_s`: the jobs' rows say nobody has claimed
        them for a while, so an arq in-progress mark older than this is a dead worker's and is
        cleared (the reconciler's repair); a younger one is left to the live worker."""
        now = time.time()
        head, _, rest = _payload("JOB-ID", "AGENT-ID").partition("JOB-ID")
        mid, _, tail = rest.partition("AGENT-ID")
        retention = self.events_retention_s
        take_over = "" if take_over_after_s is None else str(int(take_over_after_s * 1000))
        groups: dict[tuple[str, str], list[str]] = {}
        for job in jobs:
            event = JobEvent.of(job, "queued", "queued", reason=reason, at=now).encode()
            stream = stream_key(job.owner_id) if announce else ""
            group = groups.setdefault((queue_key(job.queue), stream), [])
            score = _score_ms(job, now, self.aging_s)
            group += (str(job.id), event if announce else "", score, _agent(job))
        calls = []
        for (queue, stream), group in groups.items():
            args = EnqueueArgs(
                job_key_prefix, in_progress_key_prefix, str(int(now * 1000)),
                str(JOB_EXPIRES_MS), min_id(retention), retention_ms(retention), take_over,
                head, mid, tail, queue, stream,
            )  # fmt: skip
            for start in range(0, len(group), 4 * ENQUEUE_CHUNK):
                calls.append((*astuple(args), *group[start : start + 4 * ENQUEUE_CHUNK]))
        return PreparedEnqueue(tuple(calls), len(jobs))

    async def send(self, prepared: PreparedEnqueue) -> None:
        """Run prepared script calls: one round trip for one call (the usual case), one
        pipeline for several. Redis errors propagate: the rows are committed, so the caller
        may leave the jobs to the reconciler."""
        try:
            if len(prepared.calls) == 1:
                await self._enqueue(keys=[], args=list(prepared.calls[0]))
            elif prepared.calls:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for args in prepared.calls:
                        await self._enqueue(keys=[], args=list(args), client=pipe)
                    await pipe.execute()
        except ResponseError as exc:
            if is_out_of_memory(exc):
                self._refused()  # Redis is full: new jobs are refused until it has room
            raise

    async def enqueue(
        self, jobs: Sequence[JobLike], reason: str, *, take_over_after_s: float | None = None
    ) -> None:
        """`prepare` and `send` in one call."""
        await self.send(self.prepare(jobs, reason, take_over_after_s=take_over_after_s))

    async def requeue_now(self, jobs: Sequence[JobLike]) -> None:
        """Make orphaned jobs runnable at once, even if arq still marks them in progress."""
        if not jobs:
            return
        score = str(int(time.time() * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                job_id = str(job.id)
                keys = [job_key_prefix + job_id, in_progress_key_prefix + job_id]
                args = [job_id, _payload(job_id, _agent(job)), score, str(JOB_EXPIRES_MS)]
                await self._requeue(keys=[*keys, queue_key(job.queue)], args=args, client=pipe)
            await pipe.execute()

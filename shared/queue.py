"""The queue seam: the only place outside worker/ that knows arq's Redis layout.

Redis carries job ids only (JSON-serialized, never pickled); the `job` row is the truth.
Enqueueing is idempotent: a job id already queued or running in arq is left alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

QueueClient = ArqRedis
"""The Redis client type callers outside this seam may name."""

JOB_FUNCTION = "run_job"
"""The single arq function every job runs through (worker/runner.py)."""

JOB_EXPIRES_MS = 7 * 24 * 3600 * 1000

# Enqueue jobs unless arq already holds them, and announce each one that enters the queue (a
# `queued` event in its owner's stream, shared/events.py) in the same atomic step, so the
# announcement precedes any `started`. One call carries the jobs of one queue and one stream
# (a batch is one call): per job, only its id and event.
# With ARGV[7] set (the reconciler, for rows queued and due for a while), an in-progress mark
# older than ARGV[7] ms is stale: a worker took the id from arq but died before claiming the row.
# The mark would keep arq from running the job again until it expires, so it is removed and the
# job made ready. A younger mark is a live worker's that has not claimed the row yet (a backlog):
# it is left alone. Our workers' marks hold the Redis time they were set at
# (worker/queue_worker.py); stock arq's hold 1, so they count as old.
# Keys are built from prefixes (standalone Redis, as arq itself requires).
# ARGV: job key prefix, in-progress prefix, score, job ttl, oldest event id to keep, stream ttl,
# take-over age in ms ('' for none), payload head, payload tail, queue key, stream key ('' for
# none); then per job: id and event ('' for none).
_ENQUEUE_LUA = """
local queue, stream = ARGV[10], ARGV[11]
local added, announced = 0, false
local now, take_over = 0, tonumber(ARGV[7])
if take_over then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
for i = 12, #ARGV, 2 do
  local id, event = ARGV[i], ARGV[i + 1]
  local job_key, mark = ARGV[1] .. id, ARGV[2] .. id
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
    redis.call('ZADD', queue, ARGV[3], id)
    added = added + 1
  elseif redis.call('EXISTS', job_key) == 0 then
    redis.call('SET', job_key, ARGV[8] .. id .. ARGV[9], 'PX', ARGV[4])
    if event ~= '' then
      redis.call('XADD', stream, 'MINID', '~', ARGV[5], '*', 'e', event)
      announced = true
    end
    redis.call('ZADD', queue, ARGV[3], id)
    added = added + 1
  end
end
if announced then
  redis.call('PEXPIRE', stream, ARGV[6])
end
return added
"""
ENQUEUE_CHUNK = 500  # jobs per script call: a call blocks Redis while it runs

# Make an orphaned job (its worker died) runnable now. KEYS: job, in-progress, queue.
_REQUEUE_LUA = """
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""


def queue_key(queue: str) -> str:
    """The arq queue (a sorted set) for one of our queue names."""
    return f"{default_queue_name}:{queue}"


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


def _payload(job_id: str) -> str:
    now_ms = int(time.time() * 1000)
    return serialize({"t": 1, "f": JOB_FUNCTION, "a": [job_id], "k": {}, "et": now_ms}).decode()


def _payload_parts() -> tuple[str, str]:
    """The payload of any job id as (head, tail): the script puts the id between them."""
    head, _, tail = _payload("JOB-ID").partition("JOB-ID")
    return head, tail


async def _run_script(
    redis: ArqRedis, script: str, calls: Sequence[tuple[list[str], list[str]]]
) -> None:
    """EVALSHA each (keys, args) in one pipelined round trip; load the script if Redis lost it
    (a restart), then run the whole batch again (the scripts are idempotent)."""
    sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
    for _ in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        errors = [r for r in results if isinstance(r, Exception)]
        if not errors:
            return
        if not all(isinstance(e, NoScriptError) for e in errors):
            raise errors[0]
        await redis.script_load(script)
    raise RuntimeError("Redis keeps forgetting the enqueue script")


@dataclass(frozen=True)
class Announcement:
    """An entry to append to `stream` when (and only if) a job is newly enqueued."""

    stream: str
    entry: str


@dataclass(frozen=True)
class StreamTrim:
    """How streams written by an enqueue are kept short: entries older than `keep_after_id`
    go, and an idle stream expires after `ttl_ms`."""

    keep_after_id: str
    ttl_ms: str


ScriptCalls = list[tuple[list[str], list[str]]]  # (keys, args) of each script call


async def run_enqueue(redis: ArqRedis, calls: ScriptCalls) -> None:
    """Send what `enqueue_calls` prepared (one pipelined round trip)."""
    if calls:
        await _run_script(redis, _ENQUEUE_LUA, calls)


def enqueue_calls(
    jobs: Sequence[tuple[str, str]],
    *,
    defer_s: float = 0.0,
    announce: Sequence[Announcement | None] = (),
    trim: StreamTrim = StreamTrim("0", "1"),
    take_over_after_s: float | None = None,
) -> ScriptCalls:
    """The script calls that enqueue (job id, queue) pairs; ids already in arq are skipped.
    `announce[i]`, if given, is appended to its stream as job i enters the queue (in the given
    order among the jobs of one queue and one stream).
    `take_over_after_s`: the jobs' rows say nobody has claimed them for a while, so an arq
    in-progress mark older than this is a dead worker's and is cleared (the reconciler's
    repair); a younger one is left to the live worker that is about to claim the row."""
    score = str(int((time.time() + defer_s) * 1000))
    head, tail = _payload_parts()
    common = [
        job_key_prefix,
        in_progress_key_prefix,
        score,
        str(JOB_EXPIRES_MS),
        trim.keep_after_id,
        trim.ttl_ms,
        "" if take_over_after_s is None else str(int(take_over_after_s * 1000)),
        head,
        tail,
    ]
    # Group by (queue, stream), each group in the given order: one call per group and chunk.
    groups: dict[tuple[str, str], list[str]] = {}
    for index, (job_id, queue) in enumerate(jobs):
        note = announce[index] if index < len(announce) else None
        group = groups.setdefault((queue_key(queue), note.stream if note else ""), [])
        group += (job_id, note.entry if note else "")
    return [
        ([], [*common, queue, stream, *group[start : start + 2 * ENQUEUE_CHUNK]])
        for (queue, stream), group in groups.items()
        for start in range(0, len(group), 2 * ENQUEUE_CHUNK)
    ]


async def enqueue(redis: ArqRedis, job_id: str, queue: str, *, defer_s: float = 0.0) -> None:
    """Enqueue one job id."""
    await run_enqueue(redis, enqueue_calls([(job_id, queue)], defer_s=defer_s))


async def requeue_now(redis: ArqRedis, jobs: Sequence[tuple[str, str]]) -> None:
    """Make orphaned jobs runnable at once, even if arq still marks them in progress."""
    score = str(int(time.time() * 1000))
    calls = [
        (
            [job_key_prefix + job_id, in_progress_key_prefix + job_id, queue_key(queue)],
            [job_id, _payload(job_id), score, str(JOB_EXPIRES_MS)],
        )
        for job_id, queue in jobs
    ]
    if calls:
        await _run_script(redis, _REQUEUE_LUA, calls)

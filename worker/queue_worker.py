"""arq's Worker, taking jobs off the queue in one round trip per poll.

Stock arq starts each job id it reads from the queue with its own WATCH, EXISTS, ZSCORE and
MULTI/PSETEX/EXEC exchange (four round trips), and every worker tries every ready id, so with
several workers most of those exchanges end in "started elsewhere". Here one Lua script checks
and marks as many of the ids as this worker has free slots for, atomically, in one round trip.
The marks are arq's own in-progress keys with arq's timeout, set under the same conditions (not
in progress anywhere, still in the queue, due), so the rest of arq (running, retrying, finishing,
aborting) sees exactly what it would have; their value is when they were set, which tells the
reconciler a live worker's fresh mark from a dead worker's old one.

An agent's `max_concurrency` is held in the same script: a taken job of a capped agent (its
payload names the agent; the limits are a Redis hash, shared/queue.py) gets a lease in the
agent's running set, or, when the agent's slots are all leased, is not taken and moves
`AGENT_RETRY_MS` down the queue (it stays `queued`; the ids behind it are read on). The lease
token is the job id and the mark's time, so a late release never frees a newer lease. Leases
expire after `lease_s` unless this worker's poll loop renews them (every poll, at most every
third of that): a dead or stalled worker's slot frees itself.

Redis full (`maxmemory` with `noeviction`: every write that needs memory is refused with an OOM
error): the worker takes no jobs (a mark is a write) and keeps polling until Redis has room,
without restarting its poll loop; a job whose end arq cannot record (a retry's new score) is
left to the reconciler, which re-enqueues it from its row; arq's health key waits too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from arq import Worker
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from redis.exceptions import RedisError, ResponseError

from shared.logging import describe, get_logger
from shared.queue import AGENT_LIMITS_KEY, agent_running_key, is_out_of_memory

log = get_logger(__name__)

FULL_LOG_EVERY_S = 10.0

AGENT_RETRY_MS = 250  # an over-limit job's step down the queue
_HEAD, _, _TAIL = agent_running_key("AGENT").partition("AGENT")
AGENT_PREFIX = (_HEAD, _TAIL)  # an agent's running-set key is head + agent id + tail
RELEASE_TIMEOUT_S = 2.0

# KEYS[1]: the queue, KEYS[2]: its pause flag (nothing is taken while it is set), KEYS[3]: the
# agents' limits hash. ARGV: in-progress key prefix, mark TTL (ms), now (ms, arq's clock for
# the scores), how many to take, job key prefix, the agent running-set key's head and tail,
# lease (ms), an over-limit job's step (ms), then the ids read from the queue, in its order.
# A mark holds the Redis time it was set at (arq only checks that it exists): the reconciler
# takes over only marks older than its grace (shared/queue.py). Returns per taken id: the id,
# its score and its agent lease ('' for none: the agent is not capped), then the running key.
_TAKE_LUA = """
local taken = {}
if redis.call('EXISTS', KEYS[2]) == 1 then
  return taken
end
local want, now = tonumber(ARGV[4]) * 4, tonumber(ARGV[3])
local lease_ms, step = tonumber(ARGV[8]), tonumber(ARGV[9])
local t = redis.call('TIME')
local redis_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local marked_at = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local capped = redis.call('HLEN', KEYS[3]) > 0
for i = 10, #ARGV do
  if #taken >= want then break end
  local id = ARGV[i]
  local mark = ARGV[1] .. id
  if redis.call('EXISTS', mark) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      local go, token, running = true, '', ''
      if capped then
        local payload = redis.call('GET', ARGV[5] .. id)
        local agent = payload and string.match(payload, '"agent_id":"([%w%-]+)"')
        local limit = agent and tonumber(redis.call('HGET', KEYS[3], agent))
        if limit then
          running = ARGV[6] .. agent .. ARGV[7]
          redis.call('ZREMRANGEBYSCORE', running, '-inf', redis_ms)
          if redis.call('ZCARD', running) >= limit then
            go = false
            redis.call('ZADD', KEYS[1], 'XX', now + step, id)
          else
            token = id .. ':' .. marked_at
            redis.call('ZADD', running, redis_ms + lease_ms, token)
            redis.call('PEXPIRE', running, 2 * lease_ms)
          end
        end
      end
      if go then
        redis.call('PSETEX', mark, ARGV[2], marked_at)
        taken[#taken + 1] = id
        taken[#taken + 1] = score
        taken[#taken + 1] = token
        taken[#taken + 1] = running
      end
    end
  end
end
return taken
"""

# Renew leases this worker holds. ARGV: lease (ms), then pairs of running key and token.
# A lease that expired meanwhile is taken again (the job is still running here).
_RENEW_LUA = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('ZADD', ARGV[i], until_ms, ARGV[i + 1])
  redis.call('PEXPIRE', ARGV[i], 2 * tonumber(ARGV[1]))
end
return (#ARGV - 1) / 2
"""


class QueueWorker(Worker):
    """An arq Worker whose `start_jobs` marks its jobs in one script call."""

    def __init__(self, *args: Any, paused_key: str, lease_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._take = self.pool.register_script(_TAKE_LUA)
        self._renew = self.pool.register_script(_RENEW_LUA)
        self._paused_key = paused_key
        self.lease_s = lease_s
        self.agent_leases: dict[str, tuple[str, str]] = {}  # job id -> (running key, token)
        self._renewed_at = 0.0
        self._full_logged = 0.0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Mark as many of `job_ids` as there are free slots for, and run them."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        mark_ms = int(self.in_progress_timeout_s * 1000)
        lease_ms = int(self.lease_s * 1000)
        try:
            taken = await self._take(
                keys=[self.queue_name, self._paused_key, AGENT_LIMITS_KEY],
                args=[
                    in_progress_key_prefix, mark_ms, timestamp_ms(), free, job_key_prefix,
                    *AGENT_PREFIX, lease_ms, AGENT_RETRY_MS, *job_ids,
                ],
            )  # fmt: skip
        except ResponseError as exc:
            if not is_out_of_memory(exc):
                raise
            self._redis_full("take", exc)  # nothing marked: the next poll tries again
            return
        for index in range(0, len(taken), 4):
            raw_id, raw_score, token, running = taken[index : index + 4]
            # Never waits: the semaphore has a permit more than max_jobs, and only this loop
            # takes them.
            await self.sem.acquire()
            self.job_counter += 1
            job_id = raw_id.decode()
            if token:
                self.agent_leases[job_id] = (running.decode(), token.decode())
            task = self.loop.create_task(self._run_leased(job_id, int(float(raw_score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def _run_leased(self, job_id: str, score: int) -> None:
        """Run the job, then give back its agent lease (if it holds one)."""
        try:
            await self.run_job(job_id, score)
        finally:
            lease = self.agent_leases.pop(job_id, None)
            if lease is not None:
                await asyncio.shield(self._release(*lease))

    async def _release(self, running: str, token: str) -> None:
        """Best effort: an unreleased lease expires on its own."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self.pool.zrem(running, token)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("agent.release_failed", error=describe(exc))

    async def renew_agent_leases(self) -> None:
        """Extend the agent leases of the jobs this worker runs."""
        if self.agent_leases:
            pairs = [part for lease in list(self.agent_leases.values()) for part in lease]
            await self._renew(keys=[], args=[int(self.lease_s * 1000), *pairs])
        self._renewed_at = time.monotonic()

    async def heart_beat(self) -> None:
        """arq's, after each poll; and the agent leases, every third of their life."""
        await super().heart_beat()
        if self.agent_leases and time.monotonic() - self._renewed_at > self.lease_s / 3:
            with contextlib.suppress(RedisError, OSError):
                await self.renew_agent_leases()

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's, but Redis full does not fail the job's task (which arq would re-raise from
        its poll loop). A finished job's keys are still removed (deletes need no memory); a
        job sent round again keeps its mark and is re-enqueued by the reconciler from its row
        once it is due (the mark is old by then)."""
        try:
            await super().finish_job(
                job_id,
                finish,
                result_data,
                result_timeout_s,
                keep_result_forever,
                incr_score,
                keep_in_progress,
            )
        except ResponseError as exc:
            if not is_out_of_memory(exc):
                raise
            self._redis_full("finish", exc)
            if finish:
                async with self.pool.pipeline(transaction=False) as pipe:
                    pipe.delete(
                        retry_key_prefix + job_id,
                        job_key_prefix + job_id,
                        in_progress_key_prefix + job_id,
                    )
                    pipe.zrem(abort_jobs_ss, job_id)
                    pipe.zrem(self.queue_name, job_id)
                    await pipe.execute()

    async def record_health(self) -> None:
        """arq's health key; skipped while Redis is full."""
        try:
            await super().record_health()
        except ResponseError as exc:
            if not is_out_of_memory(exc):
                raise
            self._redis_full("health", exc)

    def _redis_full(self, step: str, exc: ResponseError) -> None:
        now = time.monotonic()
        if now - self._full_logged >= FULL_LOG_EVERY_S:
            self._full_logged = now
            log.warning("worker.redis_full", step=step, error=describe(exc))

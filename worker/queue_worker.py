"""arq's Worker, taking jobs off the queue in one round trip per poll.

Stock arq starts each job id it reads from the queue with its own WATCH, EXISTS, ZSCORE and
MULTI/PSETEX/EXEC exchange (four round trips), and every worker tries every ready id, so with
several workers most of those exchanges end in "started elsewhere". Here one Lua script checks
and marks as many of the ids as this worker has free slots for, atomically, in one round trip.
The marks are arq's own in-progress keys with arq's timeout, set under the same conditions (not
in progress anywhere, still in the queue, due), so the rest of arq (running, retrying, finishing,
aborting) sees exactly what it would have; their value is when they were set, which tells the
reconciler a live worker's fresh mark from a dead worker's old one.

Redis full (`maxmemory` with `noeviction`: every write that needs memory is refused with an OOM
error): the worker takes no jobs (a mark is a write) and keeps polling until Redis has room,
without restarting its poll loop; a job whose end arq cannot record (a retry's new score) is
left to the reconciler, which re-enqueues it from its row; arq's health key waits too.
"""

from __future__ import annotations

import time
from typing import Any

from arq import Worker
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from redis.exceptions import ResponseError

from shared.logging import get_logger
from shared.queue import is_out_of_memory

log = get_logger(__name__)

FULL_LOG_EVERY_S = 10.0

# KEYS[1]: the queue, KEYS[2]: its pause flag (nothing is taken while it is set).
# ARGV: in-progress key prefix, mark TTL (ms), now (ms, arq's clock for the
# scores), how many to take, then the ids read from the queue, in its order. A mark holds the
# Redis time it was set at (arq only checks that it exists): the reconciler takes over only
# marks older than its grace (shared/queue.py). Returns the taken ids and their scores.
_TAKE_LUA = """
local taken = {}
if redis.call('EXISTS', KEYS[2]) == 1 then
  return taken
end
local want, now = tonumber(ARGV[4]) * 2, tonumber(ARGV[3])
local t = redis.call('TIME')
local marked_at = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
for i = 5, #ARGV do
  if #taken >= want then break end
  local id = ARGV[i]
  local mark = ARGV[1] .. id
  if redis.call('EXISTS', mark) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', mark, ARGV[2], marked_at)
      taken[#taken + 1] = id
      taken[#taken + 1] = score
    end
  end
end
return taken
"""


class QueueWorker(Worker):
    """An arq Worker whose `start_jobs` marks its jobs in one script call."""

    def __init__(self, *args: Any, paused_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._take = self.pool.register_script(_TAKE_LUA)
        self._paused_key = paused_key
        self._full_logged = 0.0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Mark as many of `job_ids` as there are free slots for, and run them."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        mark_ms = int(self.in_progress_timeout_s * 1000)
        try:
            taken = await self._take(
                keys=[self.queue_name, self._paused_key],
                args=[in_progress_key_prefix, mark_ms, timestamp_ms(), free, *job_ids],
            )
        except ResponseError as exc:
            if not is_out_of_memory(exc):
                raise
            self._redis_full("take", exc)  # nothing marked: the next poll tries again
            return
        for raw_id, raw_score in zip(taken[::2], taken[1::2], strict=True):
            # Never waits: the semaphore has a permit more than max_jobs, and only this loop
            # takes them.
            await self.sem.acquire()
            self.job_counter += 1
            job_id = raw_id.decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(raw_score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

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
            log.warning("worker.redis_full", step=step, error=str(exc)[:200])

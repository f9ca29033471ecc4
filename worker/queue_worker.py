"""arq's Worker, taking jobs off the queue in one round trip per poll.

Stock arq starts each job id it reads from the queue with its own WATCH, EXISTS, ZSCORE and
MULTI/PSETEX/EXEC exchange (four round trips), and every worker tries every ready id, so with
several workers most of those exchanges end in "started elsewhere". Here one Lua script checks
and marks as many of the ids as this worker has free slots for, atomically, in one round trip.
The marks are arq's own in-progress keys with arq's timeout, set under the same conditions (not
in progress anywhere, still in the queue, due), so the rest of arq (running, retrying, finishing,
aborting) sees exactly what it would have; their value is when they were set, which tells the
reconciler a live worker's fresh mark from a dead worker's old one.
"""

from __future__ import annotations

from typing import Any

from arq import Worker
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms

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

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Mark as many of `job_ids` as there are free slots for, and run them."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        mark_ms = int(self.in_progress_timeout_s * 1000)
        taken = await self._take(
            keys=[self.queue_name, self._paused_key],
            args=[in_progress_key_prefix, mark_ms, timestamp_ms(), free, *job_ids],
        )
        for raw_id, raw_score in zip(taken[::2], taken[1::2], strict=True):
            # Never waits: the semaphore has a permit more than max_jobs, and only this loop
            # takes them.
            await self.sem.acquire()
            self.job_counter += 1
            job_id = raw_id.decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(raw_score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

"""Owner quotas on submission: jobs queued at once (`OUTRIDER_OWNER_MAX_QUEUED`) and jobs per
UTC day (`OUTRIDER_OWNER_MAX_JOBS_PER_DAY`); both off by default. Over either, a submission
(all of a batch: each job counts) is refused 429 `quota_exceeded` with `Retry-After`.

The hot path is one Redis script call per submission (none when both are off), and no database
read: the script checks both counters and adds the jobs to them, or adds nothing and says which
limit refused. The counters:

    outrider:owner:queued               a hash, owner id -> jobs queued (no crawl pages):
                                        submissions add to it; the reconciler rewrites it
                                        from the database every QUEUED_SYNC_S (one GROUP BY
                                        over the queued rows, worker/lifecycle.py)
    outrider:owner:{id}:day:YYYY-MM-DD  jobs submitted that UTC day: read from the database
                                        (bounded, on the owner/created index) when missing

So a burst is counted exactly, while jobs that leave `queued` (started, cancelled) are seen at
the next rewrite. Counted: the jobs submitted through the API (single, batch); not a crawl's
pages (bounded by the crawl's `limit`); a schedule's jobs are not refused, but the database's
counts include them. If Redis is down, nothing is refused here (the row is the truth; the
submit itself goes on as without Redis).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import func, select

from api.deps import AppState
from shared.errors import QuotaExceeded
from shared.logging import describe, get_logger
from shared.models import Job
from shared.queue import OWNER_QUEUED_KEY as QUEUED_KEY

log = get_logger(__name__)

QUEUED_RETRY_AFTER_S = 5

# KEYS: the queued hash, the day counter. ARGV: jobs, max queued ('' off), max per day ('' off),
# the day counter's ttl (s), the owner id. Returns {0, which} refused; {-1} the day counter is
# missing (read it from the database first); {1} the jobs were added.
_RESERVE_LUA = """
local n, owner = tonumber(ARGV[1]), ARGV[5]
if ARGV[3] ~= '' then
  local today = redis.call('GET', KEYS[2])
  if not today then return {-1, 'day'} end
  if tonumber(today) + n > tonumber(ARGV[3]) then return {0, 'day'} end
end
if ARGV[2] ~= '' then
  local queued = tonumber(redis.call('HGET', KEYS[1], owner) or '0')
  if queued + n > tonumber(ARGV[2]) then return {0, 'queued'} end
  redis.call('HINCRBY', KEYS[1], owner, n)
end
if ARGV[3] ~= '' then
  redis.call('INCRBY', KEYS[2], n)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return {1}
"""

# Give back a reservation whose jobs were not created. KEYS, ARGV: as above.
_RELEASE_LUA = """
if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[5]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[5], -tonumber(ARGV[1]))
end
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECRBY', KEYS[2], ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class Reservation:
    """Jobs counted against an owner's quotas before their rows are written."""

    keys: tuple[str, str]
    args: tuple[str, ...]


def _keys(owner_id: uuid.UUID, day: str) -> tuple[str, str]:
    return QUEUED_KEY, f"outrider:owner:{owner_id}:day:{day}"


def _limit(value: int | None) -> str:
    return "" if value is None else str(value)


async def _today(state: AppState, owner_id: uuid.UUID, day_start: datetime) -> int:
    """The owner's jobs created since `day_start`, from the database (on the owner/created
    index), counted up to one past the limit."""
    bound = state.settings.owner_max_jobs_per_day or 0
    where = [Job.owner_id == owner_id, Job.created_at >= day_start, Job.parent_id.is_(None)]
    rows = select(Job.id).where(*where).limit(bound + 1).subquery()
    async with state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(rows)) or 0)


async def reserve(state: AppState, owner_id: uuid.UUID, jobs: int) -> Reservation | None:
    """Count `jobs` new jobs against the owner's quotas, or raise QuotaExceeded. None when no
    quota is set (or Redis is down: nothing is counted then)."""
    settings = state.settings
    if settings.owner_max_queued is None and settings.owner_max_jobs_per_day is None:
        return None
    now = datetime.now(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day_s = math.ceil((day_start + timedelta(days=1) - now).total_seconds())
    keys = _keys(owner_id, day_start.date().isoformat())
    args = (
        str(jobs),
        _limit(settings.owner_max_queued),
        _limit(settings.owner_max_jobs_per_day),
        str(next_day_s + 3600),
        str(owner_id),
    )
    script = state.redis.register_script(_RESERVE_LUA)
    try:
        for _ in range(3):
            answer = await script(keys=list(keys), args=list(args))
            status = int(answer[0])
            if status == 1:
                return Reservation(keys, args)
            which = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
            if status == 0:
                raise _refusal(int(args[1] if which == "queued" else args[2]), which, next_day_s)
            count = await _today(state, owner_id, day_start)
            await state.redis.set(keys[1], count, ex=next_day_s + 3600, nx=True)
    except (RedisError, OSError) as exc:
        log.warning("quota.unchecked", error=describe(exc))
        return None
    log.warning("quota.unchecked", error="counters kept expiring")  # pragma: no cover
    return None  # pragma: no cover


def _refusal(limit: int, which: str, next_day_s: int) -> QuotaExceeded:
    if which == "queued":
        return QuotaExceeded(
            f"Quota exceeded: at most {limit:,} jobs queued at once "
            "(OUTRIDER_OWNER_MAX_QUEUED). Retry once some have started.",
            retry_after_s=QUEUED_RETRY_AFTER_S,
            details={"quota": "queued", "limit": limit},
        )
    return QuotaExceeded(
        f"Quota exceeded: at most {limit:,} jobs per day (UTC) "
        "(OUTRIDER_OWNER_MAX_JOBS_PER_DAY). Retry tomorrow.",
        retry_after_s=next_day_s,
        details={"quota": "jobs_per_day", "limit": limit},
    )


async def release(state: AppState, reservation: Reservation | None) -> None:
    """Give back a reservation whose jobs were not created (best effort)."""
    if reservation is None:
        return
    try:
        script = state.redis.register_script(_RELEASE_LUA)
        await script(keys=list(reservation.keys), args=list(reservation.args))
    except (RedisError, OSError) as exc:
        log.warning("quota.release_failed", error=describe(exc))

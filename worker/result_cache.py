"""`max_age_s`: answer a page job from the owner's cached result, and keep fresh results.

The lookup runs after the claim (the job is a row with one attempt, like any other) and before
politeness and the engine, so a hit makes no request at all, robots.txt included. A hit's
result says `cached: true` and `metadata.cached_at` (when it was fetched); a fresh result of a
job with `max_age_s` says `cached: false` and is stored for the next one, after its outcome is
written. Results with a screenshot are not cached (the artifact belongs to its job), nor those
of a job with a `session` (its cookies are its own). The cache
is a convenience: a database error while reading or writing it is logged and the job goes on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.logging import describe, get_logger
from shared.models import Job, utcnow
from shared.result_cache import cache_key, max_age_s
from worker import counters
from worker.lifecycle import LOOP_ERRORS
from worker.state import WorkerState

log = get_logger(__name__)

CACHEABLE_KINDS = frozenset({"fetch", "scrape", "render"})
CACHE_ERRORS = (*LOOP_ERRORS, ConnectionError)


def _max_age(job: Job) -> int:
    # A job with a `session` sees what its cookies show: never answered from, nor kept in,
    # the owner's cache (another job, with another session or none, would read it).
    if job.kind not in CACHEABLE_KINDS or job.input.get("session"):
        return 0
    return max_age_s(job.input)


def mark_cached(result: dict[str, Any], cached_at: datetime) -> dict[str, Any]:
    """A cached result as a job answers it: `cached: true`, `metadata.cached_at`."""
    metadata = dict(result.get("metadata") or {})
    metadata["cached_at"] = cached_at.isoformat().replace("+00:00", "Z")
    return {**result, "cached": True, "metadata": metadata}


async def from_cache(state: WorkerState, job: Job) -> dict[str, Any] | None:
    """The cached answer to `job`, or None (no `max_age_s`, nothing young enough, an error)."""
    age = _max_age(job)
    if age <= 0:
        return None
    newer_than = utcnow() - timedelta(seconds=age)
    try:
        hit = await state.store.cached_result(
            job.owner_id, cache_key(job.kind, job.input), newer_than
        )
    except CACHE_ERRORS as exc:
        log.warning("cache.read_failed", error=describe(exc))
        return None
    counters.cache_lookup("hit" if hit else "miss")
    if hit is None:
        return None
    log.info("cache.hit", cached_at=hit.created_at.isoformat(), from_job=str(hit.job_id))
    return mark_cached(hit.result, hit.created_at)


def mark_fresh(job: Job, result: dict[str, Any]) -> dict[str, Any]:
    """A fetched result of a job with `max_age_s` says `cached: false`."""
    return {**result, "cached": False} if _max_age(job) > 0 else result


async def remember(state: WorkerState, job: Job, result: dict[str, Any]) -> None:
    """Keep a fresh result for the owner's next job with the same key."""
    if _max_age(job) <= 0 or result.get("cached") is not False or "screenshot" in result:
        return
    stored = {k: v for k, v in result.items() if k != "cached"}
    try:
        await state.store.cache_result(
            job.owner_id, cache_key(job.kind, job.input), str(job.input.get("url")), stored, job.id
        )
    except CACHE_ERRORS as exc:
        log.warning("cache.write_failed", error=describe(exc))

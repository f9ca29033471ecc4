"""The worker's Prometheus counters and histograms, and the calls that count.

A leaf: everything in worker/ may count through it, and it imports nothing of worker/ but the
refusal type it counts. Per process; several workers in one process (tests) share one set.
They count what this process saw commit (worker/job_events.py calls in after each commit);
worker/metrics.py serves them with the gauges read at scrape time.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)

from shared.errors import EgressBlocked
from shared.events import JobLike
from shared.logging import get_logger
from shared.models import AttemptOutcome, JobStatus, utcnow
from shared.repositories.execution import Claim, Outcome
from shared.specs import JOB_KINDS
from worker.refusal import POLICY_CODES, Refusal

log = get_logger(__name__)
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series: half as many

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
POLITE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

JOBS_STARTED = Counter(
    "outrider_jobs_started",
    "Attempts this process started (claims, including runs after a retry or a deferral).",
    ["kind"],
    registry=REGISTRY,
)
JOBS_SUCCEEDED = Counter(
    "outrider_jobs_succeeded", "Jobs that succeeded.", ["kind"], registry=REGISTRY
)
JOBS_FAILED = Counter(
    "outrider_jobs_failed",
    "Jobs that failed for good (permanent error or out of attempts), by error code.",
    ["kind", "code"],
    registry=REGISTRY,
)
JOBS_RETRIED = Counter(
    "outrider_jobs_retried",
    "Attempts that failed and put the job back for another (backoff), by error code.",
    ["kind", "code"],
    registry=REGISTRY,
)
JOBS_REQUEUED = Counter(
    "outrider_jobs_requeued",
    "Attempts given back without using up an attempt: `deferred` (politeness) or "
    "`interrupted` (shutdown).",
    ["kind", "reason"],
    registry=REGISTRY,
)
JOBS_CANCELLED = Counter(
    "outrider_jobs_cancelled",
    "Running jobs stopped by a user's cancel.",
    ["kind"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "outrider_job_duration_seconds",
    "Wall time of an attempt, by how it ended.",
    ["kind", "outcome"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "outrider_job_queue_wait_seconds",
    "From when a job was due (created, or its backoff or deferral over) to its claim.",
    ["kind"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
EGRESS_BLOCKED = Counter(
    "outrider_egress_blocked",
    "Destinations the egress policy refused: `url` (a URL check: a job's target, a redirect "
    "hop, an aiohttp request), `connect` (a resolved address, at connect time), "
    "`browser_proxy` (a request of Chromium's, at the worker's proxy).",
    ["where"],
    registry=REGISTRY,
)
POLITENESS_WAITS = Counter(
    "outrider_politeness_waits",
    "Requests held back for a host: `action` is `wait` (in the worker) or `defer` (back to "
    "the queue); `reason` is `host_rate`, `crawl_delay`, `host_concurrency`, `host_backoff`, "
    "`slot` (a reserved slot a moment away) or `unavailable` (Redis down).",
    ["reason", "action"],
    registry=REGISTRY,
)
POLITENESS_WAIT_SECONDS = Histogram(
    "outrider_politeness_wait_seconds",
    "How long a request was held back for its host (`wait`: slept; `defer`: requeued for).",
    ["action"],
    buckets=POLITE_BUCKETS,
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "outrider_cache_lookups",
    "Result cache look-ups of jobs with `max_age_s`: `result` is `hit` or `miss`.",
    ["result"],
    registry=REGISTRY,
)

for _kind in JOB_KINDS:  # every kind from the start: rate() needs the zero
    for _counter in (JOBS_STARTED, JOBS_SUCCEEDED, JOBS_CANCELLED):
        _counter.labels(_kind)

_METERED = "_outrider_metered"


def attempt_started(claim: Claim) -> None:
    """A claim committed: count it and how long the job waited for a worker."""
    job = claim.job
    JOBS_STARTED.labels(job.kind).inc()
    due = job.run_after or job.created_at
    if due is not None:
        QUEUE_WAIT.labels(job.kind).observe(max(_seconds_since(due), 0.0))


def attempt_ended(job: JobLike, outcome: Outcome, duration_s: float | None) -> None:
    """An attempt's outcome committed (`job` as it was claimed, possibly by another worker);
    `duration_s` is None for an attempt this process did not run (the reconciler's `lost`)."""
    kind, attempt = job.kind, outcome.attempt_outcome
    code = str((outcome.error or {}).get("code") or "unknown")
    if outcome.status == JobStatus.SUCCEEDED:
        JOBS_SUCCEEDED.labels(kind).inc()
    elif outcome.status == JobStatus.FAILED:
        JOBS_FAILED.labels(kind, code).inc()
    elif attempt in (AttemptOutcome.RETRYING, AttemptOutcome.LOST):
        JOBS_RETRIED.labels(kind, "worker_lost" if attempt == AttemptOutcome.LOST else code).inc()
    else:
        JOBS_REQUEUED.labels(kind, str(attempt)).inc()
    if duration_s is not None:
        JOB_DURATION.labels(kind, str(attempt)).observe(duration_s)


def attempt_cancelled(job: JobLike, duration_s: float | None) -> None:
    """A running job's attempt was closed as cancelled by its owner."""
    JOBS_CANCELLED.labels(job.kind).inc()
    if duration_s is not None:
        JOB_DURATION.labels(job.kind, str(AttemptOutcome.CANCELLED)).observe(duration_s)


def _seconds_since(moment: datetime) -> float:
    return (utcnow() - moment).total_seconds()


def egress_blocked(where: str, exc: BaseException) -> None:
    """Count a refusal once, however many layers it travels through."""
    if not getattr(exc, _METERED, False):
        with contextlib.suppress(AttributeError):
            setattr(exc, _METERED, True)
        EGRESS_BLOCKED.labels(where).inc()


def attempt_refused(exc: BaseException) -> None:
    """An attempt ended in `exc`: count an egress refusal no layer below counted (the engines'
    own checks of a job's target and of the redirects they follow, render's pre-check)."""
    seen: BaseException | None = exc
    for _ in range(5):  # a JobError, its cause, ...: short chains, bounded anyway
        if seen is None:
            return
        if isinstance(seen, EgressBlocked) or (
            isinstance(seen, Refusal) and seen.code in POLICY_CODES
        ):
            egress_blocked("url", seen)
            return
        seen = seen.__cause__


def politeness_wait(reason: str, action: str, seconds: float) -> None:
    """A request held back for its host: slept in the worker, or deferred to the queue."""
    POLITENESS_WAITS.labels(reason, action).inc()
    POLITENESS_WAIT_SECONDS.labels(action).observe(max(seconds, 0.0))


def cache_lookup(result: str) -> None:
    """A job with `max_age_s` looked in the result cache: `hit` or `miss`."""
    CACHE_LOOKUPS.labels(result).inc()

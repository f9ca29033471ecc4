"""Prometheus metrics of a worker process, served on `worker_metrics_port` (a thread).

Counters and histograms are per process and count what this process saw commit (worker/job_events.py
calls in after each commit); in-flight jobs and the browser's processes are read at scrape time.
Several workers in one process (tests) share one set. The cluster-wide truth is the API's
`/metrics`, whose job gauges come from the database.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import psutil
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.errors import EgressBlocked
from shared.logging import get_logger
from shared.models import AttemptOutcome, JobStatus, utcnow
from shared.repositories.execution import Claim, Outcome
from shared.settings import Settings
from shared.specs import JOB_KINDS

if TYPE_CHECKING:
    from shared.events import JobLike
    from worker.state import WorkerState

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

for _kind in JOB_KINDS:  # every kind from the start: rate() needs the zero
    for _counter in (JOBS_STARTED, JOBS_SUCCEEDED, JOBS_CANCELLED):
        _counter.labels(_kind)

# The workers of this process, for the scrape-time gauges (keyed by id: states are unhashable).
_STATES: dict[int, WorkerState] = {}
_METERED = "_outrider_metered"
REFUSAL_CODES = frozenset({"blocked_destination", "invalid_url"})


def attempt_started(claim: Claim) -> None:
    """A claim committed: count it and how long the job waited for a worker."""
    job = claim.job
    JOBS_STARTED.labels(job.kind).inc()
    due = job.run_after or job.created_at
    if due is not None:
        QUEUE_WAIT.labels(job.kind).observe(max(_seconds_since(due), 0.0))


def attempt_ended(state: WorkerState, job: JobLike, outcome: Outcome) -> None:
    """An attempt's outcome committed (`job` as it was claimed, possibly by another worker)."""
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
    _observe_duration(state, job, str(attempt))


def attempt_cancelled(state: WorkerState, job: JobLike) -> None:
    """A running job's attempt was closed as cancelled by its owner."""
    JOBS_CANCELLED.labels(job.kind).inc()
    _observe_duration(state, job, str(AttemptOutcome.CANCELLED))


def _observe_duration(state: WorkerState, job: JobLike, outcome: str) -> None:
    # Only the attempts this process ran: a reconciler's `lost` has no start time here.
    running = state.running.get(job.id)
    if running is not None and running.fence == getattr(job, "fence", running.fence):
        JOB_DURATION.labels(job.kind, outcome).observe(time.monotonic() - running.started)


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
    from worker.browser_egress import Refusal  # it counts its own refusals through this module

    seen: BaseException | None = exc
    for _ in range(5):  # a JobError, its cause, ...: short chains, bounded anyway
        if seen is None:
            return
        if isinstance(seen, EgressBlocked) or (
            isinstance(seen, Refusal) and seen.code in REFUSAL_CODES
        ):
            egress_blocked("url", seen)
            return
        seen = seen.__cause__


def politeness_wait(reason: str, action: str, seconds: float) -> None:
    """A request held back for its host: slept in the worker, or deferred to the queue."""
    POLITENESS_WAITS.labels(reason, action).inc()
    POLITENESS_WAIT_SECONDS.labels(action).observe(max(seconds, 0.0))


class _WorkerCollector(Collector):
    """In-flight jobs and browser processes, read when scraped (in the server's thread)."""

    def collect(self) -> Iterator[Metric]:
        states = list(_STATES.values())
        in_flight = GaugeMetricFamily(
            "outrider_jobs_in_flight", "Jobs this process is running now.", labels=["queue"]
        )
        per_queue: dict[str, int] = {}
        for state in states:
            per_queue[state.queue] = per_queue.get(state.queue, 0) + len(state.running)
        for queue, count in sorted(per_queue.items()):
            in_flight.add_metric([queue], count)
        yield in_flight
        pools = [state.browser for state in states if state.browser is not None]
        if pools:
            processes, rss = _browser_usage(pid for pool in pools for pid in pool.browser_pids())
            yield GaugeMetricFamily(
                "outrider_browser_processes",
                "Chromium processes (main and descendants) of this process's browsers.",
                value=processes,
            )
            yield GaugeMetricFamily(
                "outrider_browser_rss_bytes",
                "Resident memory of those processes, summed.",
                value=rss,
            )


def _browser_usage(pids: Iterable[int]) -> tuple[int, int]:
    processes = rss = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
                processes += 1
    return processes, rss


REGISTRY.register(_WorkerCollector())


@dataclass
class MetricsServer:
    """The HTTP server of one worker's /metrics (any path answers)."""

    httpd: WSGIServer
    thread: threading.Thread
    state: WorkerState

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    def stop(self) -> None:
        """Blocking (up to half a second): call it in a thread."""
        _STATES.pop(id(self.state), None)
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)


def start_server(state: WorkerState) -> MetricsServer | None:
    """Serve /metrics for this worker, as the settings say; None when turned off or when no
    port could be bound (a worker without metrics still runs jobs)."""
    _STATES[id(state)] = state
    settings: Settings = state.settings
    if not settings.worker_metrics_enabled:
        return None
    host, port = settings.worker_metrics_host, settings.worker_metrics_port or 0
    try:
        try:
            httpd, thread = start_http_server(port, host, registry=REGISTRY)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            # Another worker on this host has it: take a free port, published in liveness.
            log.warning("worker.metrics_port_in_use", port=port)
            httpd, thread = start_http_server(0, host, registry=REGISTRY)
    except OSError as exc:
        log.error("worker.metrics_unavailable", host=host, port=port, error=str(exc)[:200])
        return None
    server = MetricsServer(httpd=httpd, thread=thread, state=state)
    state.metrics_port = server.port
    log.info("worker.metrics_serving", host=host, port=server.port)
    return server


def forget(state: WorkerState) -> None:
    """The worker stopped (also when it served no metrics)."""
    _STATES.pop(id(state), None)

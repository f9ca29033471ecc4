"""Prometheus metrics of the API: this process's counters, and gauges read from the database.

The counters (`outrider_jobs_submitted_total`, ...) count what this API process did; with
`outrider api --workers N` each process has its own and a scrape sees one of them. The job and
queue gauges are the cluster-wide truth whatever process answers: they are read from the
database (and Redis) when scraped, at most once per `SNAPSHOT_TTL_S` (longer when the queries
are slow), so a storm of scrapes costs the database one query at a time. `outrider_jobs` sums
the counts the job table's triggers keep (shared/repositories/job_counts.py), so a scrape costs
the same with ten million jobs as with ten.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Scope

from api.deps import AppState
from api.schemas.status import QueueStatus
from api.services.status import queue_status
from shared.events import JobLike
from shared.logging import describe, get_logger
from shared.models import JobStatus
from shared.repositories.job_counts import job_counts
from shared.specs import JOB_KINDS

log = get_logger(__name__)
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series: half as many

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

JOBS_SUBMITTED = Counter(
    "outrider_jobs_submitted",
    "Jobs this API process created (POST /v1/jobs and /v1/jobs/batch; replays not counted).",
    ["kind"],
    registry=REGISTRY,
)
JOBS_RETRIED_BY_USER = Counter(
    "outrider_jobs_retried_by_user",
    "Failed or cancelled jobs sent round again by POST /v1/jobs/{id}/retry.",
    ["kind"],
    registry=REGISTRY,
)
for _kind in JOB_KINDS:  # every kind from the start: rate() needs the zero
    JOBS_SUBMITTED.labels(_kind)
    JOBS_RETRIED_BY_USER.labels(_kind)

SNAPSHOT_TTL_S = 2.0
SLOW_QUERY_FACTOR = 10.0  # a snapshot that took t seconds is reused for at least 10 t
SNAPSHOT_TIMEOUT_S = 10.0
SNAPSHOT_ERRORS = (SQLAlchemyError, RedisError, OSError, TimeoutError)


def jobs_submitted(jobs: Iterable[JobLike]) -> None:
    """Count jobs created (and committed) by this process."""
    for kind, count in collections.Counter(job.kind for job in jobs).items():
        JOBS_SUBMITTED.labels(kind).inc(count)


def jobs_retried_by_user(jobs: Iterable[JobLike]) -> None:
    """Count jobs a user sent round again."""
    for job in jobs:
        JOBS_RETRIED_BY_USER.labels(job.kind).inc()


def job_families(counts: Sequence[tuple[str, str, str, int]]) -> Metric:
    """`outrider_jobs`, every status of every (queue, kind) present (0 when none)."""
    family = GaugeMetricFamily(
        "outrider_jobs",
        "Jobs in the database by queue, kind and status (read when scraped).",
        labels=["queue", "kind", "status"],
    )
    table: dict[tuple[str, str], dict[str, int]] = {}
    for queue, kind, status, count in counts:
        table.setdefault((queue, kind), dict.fromkeys(JobStatus, 0))[status] = count
    for (queue, kind), by_status in sorted(table.items()):
        for status, count in by_status.items():
            family.add_metric([queue, kind, str(status)], count)
    return family


QUEUE_GAUGES = (
    # (name, help, QueueOut attribute)
    ("outrider_queue_ready", "Queued jobs that are due now.", "ready"),
    (
        "outrider_queue_deferred",
        "Queued jobs waiting for their time (backoff, politeness).",
        "deferred",
    ),
    ("outrider_queue_running", "Jobs a worker is running.", "running"),
    (
        "outrider_queue_oldest_ready_age_seconds",
        "How long the oldest due job has waited (0 when none is due).",
        "oldest_ready_age_s",
    ),
    (
        "outrider_queue_throughput_per_second",
        "Jobs finished (succeeded or failed) per second, over the last few seconds.",
        "throughput_per_s",
    ),
    ("outrider_queue_in_redis", "Job ids the Redis queue holds.", "in_redis"),
    ("outrider_workers_live", "Worker processes with a fresh heartbeat.", "workers"),
)


def queue_families(status: QueueStatus) -> Iterator[Metric]:
    """One gauge per queue number of GET /v1/queue."""
    for name, help_text, attribute in QUEUE_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=["queue"])
        for queue in status.queues:
            family.add_metric([queue.name], float(getattr(queue, attribute) or 0))
        yield family


class DatabaseGauges(Collector):
    """The job table and the queues as of the last snapshot; `refresh` before collecting."""

    def __init__(self) -> None:
        self._families: list[Metric] = []
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, state: AppState) -> None:
        """Take a snapshot unless the last one is fresh; one at a time (concurrent scrapes
        wait for it and share it)."""
        if time.monotonic() < self._expires:
            return
        async with self._lock:
            if time.monotonic() < self._expires:
                return
            started = time.monotonic()
            families = await self._snapshot(state)
            took = time.monotonic() - started
            self._families = families
            self._expires = time.monotonic() + max(SNAPSHOT_TTL_S, SLOW_QUERY_FACTOR * took)

    async def _snapshot(self, state: AppState) -> list[Metric]:
        ok = GaugeMetricFamily(
            "outrider_metrics_snapshot_ok",
            "1 if the database gauges below could be read, 0 if the database or Redis failed.",
        )
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
                async with state.sessionmaker() as session:
                    counts = await job_counts(session)
                status = await queue_status(state)
        except SNAPSHOT_ERRORS as exc:
            # Numbers we cannot read are left out rather than shown stale.
            log.warning("metrics.snapshot_failed", error=describe(exc))
            ok.add_metric([], 0)
            return [ok]
        ok.add_metric([], 1)
        return [ok, job_families(counts), *queue_families(status)]

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class ApiMetrics:
    """What one app serves at /metrics: the process registry plus its database gauges."""

    def __init__(self) -> None:
        self.gauges = DatabaseGauges()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self.gauges)

    async def exposition(self, state: AppState) -> bytes:
        """The text exposition format (0.0.4)."""
        await self.gauges.refresh(state)
        return generate_latest(REGISTRY) + generate_latest(self._registry)


HTTP_REQUESTS = Counter(
    "outrider_http_requests",
    "Requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "outrider_http_request_duration_seconds",
    "From the request to the end of the response, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpSeries:
    """Counts requests and their latency by route template (never the raw path: ids would
    make a series each), for api/middleware.py's edge layer. Label lookups are cached."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")  # set by the router on the scope the app was given
        key = (scope["method"], getattr(route, "path", "unmatched"), status)
        series = self._series.get(key) or self._add(key)
        series[0].inc()
        series[1].observe(seconds)

    def _add(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        method, route, status = key
        method = method if method in METHODS else "other"
        series = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )
        if len(self._series) < 10_000:  # bounded, whatever clients send
            self._series[key] = series
        return series

"""A worker process's /metrics, served on `worker_metrics_port` (a thread): the counters of
worker/counters.py and the gauges read at scrape time (in-flight jobs, the browser's
processes). The cluster-wide truth is the API's `/metrics`, whose job gauges come from the
database.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import psutil
from prometheus_client import start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.logging import describe, get_logger
from shared.settings import Settings
from worker.counters import REGISTRY

if TYPE_CHECKING:
    from worker.state import WorkerState

log = get_logger(__name__)

# The workers of this process, for the scrape-time gauges (keyed by id: states are unhashable).
_STATES: dict[int, WorkerState] = {}


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
        log.error("worker.metrics_unavailable", host=host, port=port, error=describe(exc))
        return None
    server = MetricsServer(httpd=httpd, thread=thread, state=state)
    state.metrics_port = server.port
    log.info("worker.metrics_serving", host=host, port=server.port)
    return server


def forget(state: WorkerState) -> None:
    """The worker stopped (also when it served no metrics)."""
    _STATES.pop(id(state), None)

"""Memory of a process tree (PSS, RSS), sampled in a thread, and Chromium processes left."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from types import TracebackType

import psutil

MB = 2**20


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of the whole tree: shared pages are counted once, split."""
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().pss
    return total / MB


def rss_mb(pid: int) -> float:
    """Resident set size of the process alone."""
    return psutil.Process(pid).memory_info().rss / MB


def is_chromium(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        return "chrom" in proc.name().lower()
    return False


def chromium_of(worker_pid: int) -> dict[int, float]:
    """Chromium processes of the Outrider worker `worker_pid` now: its descendants named
    chrom*, plus any process carrying the worker's `--outrider-browser=PID-...` marker (the
    browser's main process keeps it even when reparented). {pid: create_time}."""
    marker = f"--outrider-browser={worker_pid}-"
    found = {p.pid: p.create_time() for p in tree(worker_pid)[1:] if is_chromium(p)}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if any(arg.startswith(marker) for arg in proc.info["cmdline"] or ()):
                for member in tree(proc.pid):
                    found[member.pid] = member.create_time()
    return found


def still_running(processes: dict[int, float]) -> list[int]:
    """Those of `processes` ({pid: create_time}) that are still running (not zombies)."""
    alive = []
    for pid, created in processes.items():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


class ChromiumWatch:
    """Remembers every Chromium process the worker `pid` ran (checked every `interval_s` in a
    thread), including those of browsers it recycled before the end."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(chromium_of(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> ChromiumWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.seen.update(chromium_of(self.pid))


class PeakSampler:
    """Samples `measure(pid)` (by default the PSS of the tree) every `interval_s` in a thread;
    keeps the peak."""

    def __init__(
        self, pid: int, interval_s: float = 0.5, measure: Callable[[int], float] = tree_pss_mb
    ) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.measure = measure
        self.peak_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.peak_mb = max(self.peak_mb, self.measure(self.pid))
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

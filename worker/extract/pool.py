"""The parse pool: CPU-heavy parsing runs in worker processes, never on the event loop.

Why processes, not threads: lxml releases the GIL while libxml2 parses, but trafilatura's
extraction, the link walk and the selector schema are Python code holding the GIL. In a thread,
the loop (heartbeats, lease renewals, other jobs' I/O) gets the GIL back only at each 5 ms switch
interval, per parsing thread, and two parses never use two cores. Measured with a 1.15 MB page
(about 1 s to parse) and a 5 ms heartbeat, on a shared 2-core machine: median heartbeat lag
3-11 ms with 1-4 parses in threads against 0.2-3 ms in this pool, worst lags up to 430 ms in
threads (the worst cases of both were dominated by the machine's other load). The cost: the
page and the result are pickled across (milliseconds).

Choices:
- `forkserver` start method: children are forked from a clean, single-threaded server that has
  the parsing modules preloaded (fast start, no fork of a threaded asyncio process).
- Processes are started by `submit`, so the first submit of each generation runs in a thread:
  nothing that spawns a process ever blocks the loop.
- Python 3.11's `max_tasks_per_child` can deadlock the executor (CPython gh-115634), so the pool
  recycles itself: after `recycle_after` tasks a fresh executor takes new work and the old one
  is shut down once its running tasks finish. This bounds slow memory growth in lxml.
- A child that dies (OOM killer, segfault) breaks a ProcessPoolExecutor for good; the pool then
  swaps in a fresh executor and the job fails with a retryable `parse_failed`.
- Cancelling the awaiting task drops work that has not started; a parse that is running runs to
  its end (its result is discarded). The fetch size cap bounds how long that can be.
- One pool per worker process, shared (reference-counted) by every WorkerState in it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from shared.job_errors import JobErrorCode
from shared.logging import describe, get_logger
from worker.retry import JobError

log = get_logger(__name__)

T = TypeVar("T")
DEFAULT_WORKERS = 2
DEFAULT_RECYCLE_AFTER = 500
PRELOAD = ["worker.extract.document"]


def _warm_up(owner_pid: int | None = None) -> None:
    """Initializer of each child: import the parsers once, before the first task; and follow
    the pool's owner out if it dies."""
    import worker.extract.document  # noqa: F401

    if owner_pid is not None:
        threading.Thread(target=_exit_with, args=(owner_pid,), daemon=True).start()


def _exit_with(owner_pid: int) -> None:
    # A killed worker never shuts its pool down, and an idle child would wait on its queue
    # forever, keeping the forkserver and the resource tracker alive too.
    try:
        pidfd = os.pidfd_open(owner_pid)
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # no pidfd (kernel < 5.3): poll
        while True:
            time.sleep(1)
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                os._exit(0)
    select.select([pidfd], [], [])  # readable once the owner has exited
    os._exit(0)


def _noop() -> None:
    return None


class ParsePool:
    """A process pool for parsing, with recycling and recovery from a dead child."""

    def __init__(self, workers: int = DEFAULT_WORKERS, recycle_after: int = DEFAULT_RECYCLE_AFTER):
        self.workers = max(1, workers)
        self.recycle_after = recycle_after
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._lock = threading.Lock()
        self._executor = self._new_executor()
        self._tasks = 0
        self._retiring: list[threading.Thread] = []
        self._closed = False
        self._warmer: threading.Thread | None = None

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=self._context, initializer=_warm_up, initargs=(os.getpid(),)
        )

    def _submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> tuple[concurrent.futures.ProcessPoolExecutor, concurrent.futures.Future[T]]:
        # Runs in a thread: submit may start a process (and, the first time, the forkserver).
        with self._lock:
            if self._closed:
                raise RuntimeError("the parse pool is closed")
            if self._tasks >= self.recycle_after:
                self._retire(self._executor)
                self._executor = self._new_executor()
                self._tasks = 0
            self._tasks += 1
            executor = self._executor
            return executor, executor.submit(fn, *args, **kwargs)

    def _retire(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        # Its running and queued work finishes, then its children are joined (in a thread:
        # shutdown(wait=False) would forget them, and close() could not wait for them).
        retiring = threading.Thread(
            target=executor.shutdown, kwargs={"wait": True}, name="parse-pool-retire", daemon=True
        )
        retiring.start()
        self._retiring = [t for t in self._retiring if t.is_alive()] + [retiring]

    def _replace_broken(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken and not self._closed:
                self._retire(broken)
                self._executor = self._new_executor()
                self._tasks = 0

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` in a child process; arguments and result must pickle."""
        executor, future = await asyncio.to_thread(self._submit, fn, *args, **kwargs)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            log.warning("parse_pool.broken", error=describe(exc))
            await asyncio.to_thread(self._replace_broken, executor)
            raise JobError(
                JobErrorCode.PARSE_FAILED,
                "The parser process died; the page will be tried again.",
                retryable=True,
            ) from exc

    def _warm(self) -> None:
        try:
            futures = [self._submit(_noop)[1] for _ in range(self.workers)]
            concurrent.futures.wait(futures)
        except (RuntimeError, BrokenProcessPool) as exc:  # closed meanwhile, or a child died
            log.warning("parse_pool.warm_failed", error=describe(exc))

    def start_warming(self) -> None:
        """Start the children in the background, so the first job does not wait for them."""
        if self._warmer is None:
            self._warmer = threading.Thread(target=self._warm, name="parse-pool-warm", daemon=True)
            self._warmer.start()

    def pids(self) -> set[int]:
        """Process ids of the current generation's children (for tests)."""
        with self._lock:
            return set(self._executor._processes or {})

    def _shutdown_all(self) -> None:
        with self._lock:
            self._closed = True
            retiring, self._retiring = self._retiring, []
        self._executor.shutdown(wait=True, cancel_futures=True)
        for thread in [*retiring, *([self._warmer] if self._warmer else [])]:
            thread.join()

    async def close(self) -> None:
        """Cancel queued work, wait for running parses, and join every child process."""
        await asyncio.to_thread(self._shutdown_all)


class _Shared:
    pool: ParsePool | None = None
    users = 0
    lock = threading.Lock()


def acquire_shared_pool(workers: int = DEFAULT_WORKERS, *, warm: bool = False) -> ParsePool:
    """The process's parse pool, created by the first caller; pair with `release_shared_pool`.

    `warm` starts the children now (in a thread) rather than on the first parse.
    """
    with _Shared.lock:
        if _Shared.pool is None:
            _Shared.pool = ParsePool(workers)
        _Shared.users += 1
        pool = _Shared.pool
    if warm:
        pool.start_warming()
    return pool


async def release_shared_pool(pool: ParsePool) -> None:
    """Drop one use of the shared pool; the last user closes it."""
    with _Shared.lock:
        if pool is not _Shared.pool:
            return
        _Shared.users -= 1
        last = _Shared.users <= 0
        if last:
            _Shared.pool, _Shared.users = None, 0
    if last:
        await pool.close()


def shared_pool() -> ParsePool | None:
    """The process's parse pool while some worker holds it, else None."""
    return _Shared.pool


class HasParsePool(Protocol):
    parse_pool: ParsePool


PoolLike = HasParsePool | ParsePool | concurrent.futures.Executor | None


async def parse_off_loop(
    state_or_pool: PoolLike, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run a synchronous, picklable `fn` off the event loop.

    `state_or_pool` is a WorkerState (its `parse_pool`), a ParsePool, any Executor, or None for
    the process's shared pool; without one (a script, a unit test) `fn` runs in a thread.
    """
    target: ParsePool | concurrent.futures.Executor | None
    if state_or_pool is None:
        target = shared_pool()
    elif isinstance(state_or_pool, ParsePool | concurrent.futures.Executor):
        target = state_or_pool
    else:
        target = state_or_pool.parse_pool
    if isinstance(target, ParsePool):
        return await target.run(fn, *args, **kwargs)
    call = functools.partial(fn, *args, **kwargs)
    if isinstance(target, concurrent.futures.Executor):
        return await asyncio.get_running_loop().run_in_executor(target, call)
    return await asyncio.to_thread(call)

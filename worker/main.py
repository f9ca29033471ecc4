"""The worker process: arq settings, the registered jobs, and a supervised run loop.

`serve()` owns the lifecycle arq leaves open: it keeps the worker up through Redis outages
(restarting arq's poll loop), and on SIGTERM/SIGINT stops taking jobs, lets running ones finish
for `worker_shutdown_grace_s`, then interrupts the rest, which go back to the queue without
using up an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from arq.typing import WorkerCoroutine

from shared import gc_tuning
from shared.logging import describe, get_logger
from shared.queue import JOB_FUNCTION, deserialize, paused_key, queue_key, serialize
from shared.settings import Settings
from worker import metrics
from worker.lifecycle import Reconciler, heartbeat_loop, retire
from worker.queue_worker import QueueWorker
from worker.retention import retention_loop
from worker.runner import run_job
from worker.scheduler import scheduler_loop
from worker.state import BROWSER_QUEUE, WorkerState
from worker.webhooks import webhook_loop

log = get_logger(__name__)

# Every arq function, in one explicit list. Periodic work runs as background loops.
FUNCTIONS: list[WorkerCoroutine] = [run_job]
BACKGROUND_LOOPS: list[Callable[[WorkerState], Awaitable[None]]] = [
    heartbeat_loop,
    lambda state: Reconciler(state).loop(),
    scheduler_loop,
    webhook_loop,
    retention_loop,
]
RESTART_DELAY_S = 1.0

assert run_job.__name__ == JOB_FUNCTION


def build_worker(state: WorkerState, concurrency: int) -> QueueWorker:
    """An arq Worker for the state's queue. Signals are ours, not arq's."""
    settings = state.settings
    return QueueWorker(
        functions=FUNCTIONS,
        queue_name=queue_key(state.queue),
        paused_key=paused_key(state.queue),
        lease_s=settings.worker_lease_s,
        redis_pool=state.redis,
        ctx={"state": state},
        max_jobs=concurrency,
        job_timeout=settings.job_max_timeout_s + 120,
        keep_result=0,  # results live in PostgreSQL; a kept result would block re-enqueue
        max_tries=1_000_000,  # attempts are counted in the job row, not by arq
        poll_delay=settings.worker_poll_delay_s,
        handle_signals=False,
        job_serializer=serialize,
        job_deserializer=deserialize,
        health_check_interval=max(int(settings.worker_heartbeat_s), 1),
        log_results=False,
    )


async def _drain(worker: QueueWorker, grace_s: float) -> None:
    worker.allow_pick_jobs = False
    tasks = [t for t in worker.tasks.values() if not t.done()]
    log.info("worker.draining", running=len(tasks), grace_s=grace_s)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)


def _reap_failed_tasks(worker: QueueWorker) -> int:
    # arq re-raises a failed job task (its own Redis calls failed in an outage) from the poll
    # loop, one per poll; reap them all now, or each would cost another restart after Redis
    # is back. The rows are the truth: the reconciler repairs what those tasks left undone.
    failed = 0
    for job_id, task in list(worker.tasks.items()):
        if task.done():
            del worker.tasks[job_id]
            failed += not task.cancelled() and task.exception() is not None
    return failed


async def _stop_loops(loops: list[asyncio.Task[None]]) -> None:
    # Cancel until they are done: a cancel that lands in a library's cleanup can be lost.
    pending = {task for task in loops if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1)


async def serve(
    settings: Settings, queue: str, concurrency: int, stop: asyncio.Event | None = None
) -> None:
    """Run a worker until `stop` is set (by default: until SIGTERM or SIGINT)."""
    state = await WorkerState.create(settings, queue)
    structlog.contextvars.bind_contextvars(worker_id=state.worker_id)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await state.start()  # before the jobs' tasks exist: they inherit what it binds
    except BaseException:
        await state.close()
        raise
    if queue == BROWSER_QUEUE:  # a page per job slot; more would only thrash the browser
        concurrency = min(concurrency, settings.browser_max_pages)
    state.concurrency = concurrency
    metrics_server = metrics.start_server(state)  # before the heartbeat publishes its port
    gc_tuning.settle()
    loops: list[asyncio.Task[None]] = [asyncio.ensure_future(fn(state)) for fn in BACKGROUND_LOOPS]
    log.info("worker.started", worker_id=state.worker_id, queue=queue, concurrency=concurrency)
    worker = build_worker(state, concurrency)
    try:
        while not stop.is_set():
            main = asyncio.create_task(worker.async_run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await main
                break
            exc = main.exception()
            log.warning(
                "worker.poll_loop_restarting",
                error=describe(exc) if exc is not None else "ended",
                failed_tasks=_reap_failed_tasks(worker),
            )
            await asyncio.sleep(RESTART_DELAY_S)
        await _drain(worker, settings.worker_shutdown_grace_s)
    finally:
        await _stop_loops(loops)
        await retire(state)
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.stop)
        metrics.forget(state)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await state.redis.delete(worker.health_check_key)
        await state.close()
        log.info("worker.stopped", worker_id=state.worker_id)


def run(settings: Settings, queue: str, concurrency: int, uvloop: bool = True) -> None:
    """Blocking entry point for the CLI."""
    runner: Any = asyncio.run
    if uvloop:
        with contextlib.suppress(ImportError):
            import uvloop as _uvloop

            runner = _uvloop.run
    runner(serve(settings, queue, concurrency))

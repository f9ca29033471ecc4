"""Background loops of a worker process: liveness, lease renewal, cancel watch, reconciler.

Leases live in the job rows (they survive a Redis restart); the liveness key in Redis says which
workers are up. The reconciler runs in every worker but only one at a time does the work (a
Redis lock); everything it does is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta

from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from shared import __version__
from shared.liveness import liveness_key, publish_liveness, remove_liveness
from shared.logging import describe, get_logger
from shared.models import utcnow
from shared.queue import replace_agent_limits, replace_owner_queued
from shared.repositories import frontier
from shared.repositories.agent import agent_limits
from shared.repositories.execution import Released
from shared.repositories.job import queued_by_owner
from shared.repositories.job_counts import fold_job_counts
from worker.crawl.settle import repair
from worker.job_events import job_ended
from worker.state import WorkerState

log = get_logger(__name__)

CANCEL_WATCH_S = 0.5
RECONCILE_LOCK = "outrider:lock:reconciler"
RECONCILE_BATCH = 1000
REDIS_WAIT_S = 2.0
LOOP_ERRORS = (SQLAlchemyError, RedisError, OSError, TimeoutError)


async def _publish_liveness(state: WorkerState, started_at: str) -> None:
    host, pid, _ = state.worker_id.rsplit(":", 2)
    info = {
        "worker_id": state.worker_id,
        "host": host,
        "pid": int(pid),
        "queue": state.queue,
        "concurrency": state.concurrency,
        "running": len(state.running),
        "jobs": [str(job_id) for job_id in state.running],
        "done": state.jobs_done,
        "failed": state.jobs_failed,
        "started_at": started_at,
        "heartbeat_at": utcnow().isoformat(),
        "version": __version__,
        "metrics_port": state.metrics_port,
    }
    # Three missed heartbeats and the worker is gone from every listing.
    ttl_s = state.settings.worker_heartbeat_s * 3
    # Bounded: a Redis outage must not stop the lease renewals in PostgreSQL.
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel, and a loop that
    # swallows its cancel keeps a stopping worker alive.
    async with asyncio.timeout(REDIS_WAIT_S):
        await publish_liveness(state.redis, info, ttl_s)


async def _watch_cancels(state: WorkerState) -> None:
    pairs = [(job_id, run.fence) for job_id, run in state.running.items()]
    if not pairs:
        return
    gone = await state.store.stale_claims(pairs)
    for job_id in gone:
        run = state.running.get(job_id)
        if run is not None and not run.task.done():
            run.cancelled_by_user = True
            run.task.cancel()


async def heartbeat_loop(state: WorkerState) -> None:
    """Renew leases and liveness every heartbeat; watch for cancels twice a second."""
    started_at = utcnow().isoformat()
    last_beat = 0.0
    while True:
        await _guarded(_watch_cancels(state))
        if time.monotonic() - last_beat >= state.settings.worker_heartbeat_s:
            if state.running:
                await _guarded(_renew_leases(state))
            # Even when the database is down: liveness is what tells the reconciler that this
            # worker's expired leases are a database blip, not a dead worker.
            await _guarded(_publish_liveness(state, started_at))
            await state.events.flush()  # events an outage held back
            last_beat = time.monotonic()
        await asyncio.sleep(CANCEL_WATCH_S)


async def _renew_leases(state: WorkerState) -> None:
    await state.store.renew_leases(
        state.worker_id, state.settings.worker_lease_s, list(state.running)
    )


async def _guarded(step: Awaitable[None]) -> None:
    try:
        await step
    except LOOP_ERRORS as exc:
        log.warning("worker.heartbeat_failed", error=describe(exc))


async def retire(state: WorkerState) -> None:
    """On graceful shutdown: remove only this worker's own entry."""
    with contextlib.suppress(*LOOP_ERRORS):
        async with asyncio.timeout(REDIS_WAIT_S):
            await remove_liveness(state.redis, state.worker_id)


class Reconciler:
    """Repairs what a crash can leave behind: jobs whose worker died, enqueues that were lost."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self._position: tuple[datetime, uuid.UUID] | None = None

    async def run_once(self) -> tuple[int, int]:
        """One pass; returns (orphans requeued, lost enqueues repaired or confirmed). Then
        the parked crawls are repaired and refilled (a dead worker never leaves one stuck),
        and the job counts' deltas folded (shared/repositories/job_counts.py)."""
        counts = await self._orphans(), await self._unenqueued()
        await self._crawls()
        async with self.state.sessionmaker.begin() as session:
            await fold_job_counts(session)
        await self._agent_limits()
        if self.state.settings.owner_max_queued is not None:
            await self._owner_queued()
        return counts

    async def _owner_queued(self) -> None:
        """Rewrite the owners' queued counts in Redis (OUTRIDER_OWNER_MAX_QUEUED's) from the
        database: the API adds submissions to them; this sees the jobs that left `queued`."""
        async with self.state.sessionmaker() as session:
            counts = await queued_by_owner(session)
        await replace_owner_queued(self.state.redis, counts)

    async def _agent_limits(self) -> None:
        """Rewrite the agents' `max_concurrency` in Redis from the database (the API writes
        each change at once; this repairs a change made while Redis was away, or lost)."""
        async with self.state.sessionmaker() as session:
            limits = await agent_limits(session)
        await replace_agent_limits(self.state.redis, limits)

    async def _crawls(self) -> int:
        """Settle pages whose job ended unrecorded, refill every parked crawl."""
        after: uuid.UUID | None = None
        settled = 0
        while True:
            async with self.state.frontier.read() as session:
                crawls = await frontier.parked_crawls(session, after, RECONCILE_BATCH)
            for crawl_id in crawls:
                settled += await repair(self.state, crawl_id, RECONCILE_BATCH)
            if len(crawls) < RECONCILE_BATCH:
                return settled
            after = crawls[-1]

    async def _orphans(self) -> int:
        state = self.state
        orphans = await state.store.find_orphans(RECONCILE_BATCH)
        released: list[Released] = []
        for job_id, fence, worker_id in orphans:
            if worker_id and await self._runs(worker_id, job_id):
                continue  # alive but could not renew (a database blip): let it finish
            found = await state.store.release_orphan(job_id, fence)
            if found is not None:
                released.append(found)
                log.warning(
                    "job.orphan_requeued" if found.requeued else "job.orphan_failed",
                    job_id=str(job_id),
                    fence=fence,
                )
        requeue = [r.job for r in released if r.requeued]
        await state.job_queue.requeue_now(requeue)
        for item in released:
            await job_ended(state, item.job, item.outcome)
        return len(requeue)

    async def _runs(self, worker_id: str, job_id: uuid.UUID) -> bool:
        """Whether a live worker runs this job. A live worker that does not list it holds a
        claim that it never got to run (the commit went through, the reply was lost)."""
        raw = await self.state.redis.get(liveness_key(worker_id))
        if raw is None:
            return False
        jobs = json.loads(raw).get("jobs")
        return jobs is None or str(job_id) in jobs  # no list: a worker that predates it

    async def _unenqueued(self) -> int:
        state = self.state
        older_than = utcnow() - timedelta(seconds=state.settings.enqueue_grace_s)
        rows = await state.store.find_unenqueued(older_than, self._position, RECONCILE_BATCH)
        if rows:
            # Queued and due for a while: no worker runs them (a claim would have made them
            # running), so an in-progress mark in arq as old as that is a dead worker's. A
            # younger one belongs to a worker that took the id from a backlog and is about to
            # claim the row.
            await state.job_queue.enqueue(
                rows, "recovered", take_over_after_s=state.settings.enqueue_grace_s
            )
        # Walk the backlog a batch per pass, then start over.
        last = rows[-1] if len(rows) == RECONCILE_BATCH else None
        self._position = (last.run_after, last.id) if last else None
        return len(rows)

    async def loop(self) -> None:
        """Reconcile every interval, in one worker at a time."""
        interval = self.state.settings.reconcile_interval_s
        while True:
            try:
                lock = self.state.redis.lock(RECONCILE_LOCK, timeout=max(interval * 5, 5))
                async with asyncio.timeout(REDIS_WAIT_S):
                    acquired = await lock.acquire(blocking=False)
                if acquired:
                    try:
                        await self.run_once()
                    finally:
                        with contextlib.suppress(LockError):
                            await lock.release()
            except LOOP_ERRORS as exc:
                log.warning("reconciler.failed", error=describe(exc))
            await asyncio.sleep(interval)

"""Retention: a background loop in every worker that deletes jobs ended more than
`job_retention_s` ago, with their attempts, artifacts and webhook deliveries, the schedule
runs left without a job (shared/repositories/retention.py says what goes and what stays), and
cached results (`max_age_s`) older than the same cutoff.

Off unless `OUTRIDER_JOB_RETENTION_S` is set: by default every job is kept. The cutoff is read
from the clock all workers share (PostgreSQL's, or Redis's with SQLite), so a worker with a
fast clock deletes nothing early. Deletes run in batches of `BATCH` rows, one short transaction
each, so neither the API's reads nor the workers' writes wait behind a long purge; every worker
runs the loop, and on PostgreSQL concurrent passes skip each other's rows.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import shared_now
from shared.logging import describe, get_logger
from shared.repositories.result_cache import delete_old_results
from shared.repositories.retention import delete_ended_jobs, delete_old_schedule_runs
from worker.lifecycle import LOOP_ERRORS
from worker.state import WorkerState

log = get_logger(__name__)

BATCH = 500
DeleteBatch = Callable[[AsyncSession, datetime, int], Awaitable[int]]


@dataclass
class Pruned:
    jobs: int = 0
    schedule_runs: int = 0
    cached_results: int = 0


class Pruner:
    """Deletes one worker's share of the expired history."""

    def __init__(self, state: WorkerState, batch: int = BATCH) -> None:
        self.state = state
        self.batch = batch

    async def run_once(self) -> Pruned:
        """Delete everything that has expired, a batch at a time; what went."""
        retention_s = self.state.settings.job_retention_s
        if retention_s is None:
            return Pruned()
        async with self.state.sessionmaker() as session:
            now = await shared_now(session, self.state.redis)
        cutoff = now - timedelta(seconds=retention_s)
        # Jobs first: their schedule runs are left without a job as they go.
        pruned = Pruned(
            jobs=await self._drain(delete_ended_jobs, cutoff),
            schedule_runs=await self._drain(delete_old_schedule_runs, cutoff),
            cached_results=await self._drain(delete_old_results, cutoff),
        )
        if pruned.jobs or pruned.schedule_runs or pruned.cached_results:
            log.info(
                "retention.pruned",
                jobs=pruned.jobs,
                schedule_runs=pruned.schedule_runs,
                cached_results=pruned.cached_results,
                cutoff=cutoff.isoformat(),
            )
        return pruned

    async def _drain(self, delete_batch: DeleteBatch, cutoff: datetime) -> int:
        """Run `delete_batch` until a batch comes back short; how many rows went."""
        total = 0
        while True:
            async with self.state.sessionmaker.begin() as session:
                deleted = await delete_batch(session, cutoff, self.batch)
            total += deleted
            if deleted < self.batch:
                return total
            await asyncio.sleep(0)  # let the worker's jobs run between batches

    async def loop(self) -> None:
        """Prune every `retention_interval_s` (jittered, so workers spread out), forever."""
        interval = self.state.settings.retention_interval_s
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            try:
                await self.run_once()
            except LOOP_ERRORS as exc:
                log.warning("retention.failed", error=describe(exc))
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))


async def retention_loop(state: WorkerState) -> None:
    """The worker's background loop (worker/main.py BACKGROUND_LOOPS); idle when retention
    is off."""
    if state.settings.job_retention_s is None:
        return
    await Pruner(state).loop()

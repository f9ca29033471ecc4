"""The scheduler: a background loop in every worker that fires due schedules.

Every worker runs it; no leader, no Redis lock: the database makes each (schedule, instant) fire
once (shared/services/schedules.py explains the guards). A pass takes due schedules one per
short transaction (FOR UPDATE SKIP LOCKED, so workers share a burst of due schedules), fires
them, commits, then enqueues the new jobs at once. Between passes it sleeps until the earliest
`next_fire_at` (by the shared clock), at most `schedule_poll_interval_s`, so an instant is
queued well within 2 s. On PostgreSQL each firing transaction sets
`idle_in_transaction_session_timeout`, so a worker that vanishes mid-transaction (a dead host
keeps its TCP connection half-open) releases the row in seconds instead of hours.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import shared_now
from shared.db import is_postgres
from shared.logging import describe, get_logger
from shared.repositories.job import NewJob
from shared.repositories.schedule import claim_due, earliest_fire_at
from shared.services.schedules import FireContext, process_due
from worker.lifecycle import LOOP_ERRORS
from worker.state import WorkerState

log = get_logger(__name__)

MAX_PER_PASS = 500
QUARANTINE_S = 30.0  # a schedule whose firing crashed is left alone this long
BUSY_RECHECK_S = 0.25  # something is due but held by another worker: look again soon
MIN_SLEEP_S = 0.01
IDLE_TX_TIMEOUT = "SET LOCAL idle_in_transaction_session_timeout = '10s'"

Clock = Callable[[AsyncSession], Awaitable[datetime]]


class Scheduler:
    """Fires due schedules for one worker process."""

    def __init__(self, state: WorkerState, clock: Clock | None = None) -> None:
        self.state = state
        self.ctx = FireContext(settings=state.settings, policy=state.policy)
        self._clock = clock
        self._quarantine: dict[uuid.UUID, float] = {}
        self.more_due = False

    async def now(self, session: AsyncSession) -> datetime:
        """The clock that decides what is due: the database's, or Redis's with SQLite."""
        if self._clock is not None:
            return await self._clock(session)
        return await shared_now(session, self.state.redis)

    def _excluded(self) -> set[uuid.UUID]:
        now = time.monotonic()
        self._quarantine = {k: until for k, until in self._quarantine.items() if until > now}
        return set(self._quarantine)

    async def fire_next(self) -> list[NewJob] | None:
        """Claim one due schedule and fire it; None when nothing (claimable) is due."""
        excluded = self._excluded()
        claimed: uuid.UUID | None = None
        try:
            async with self.state.sessionmaker.begin() as session:
                if is_postgres(session):
                    await session.execute(text(IDLE_TX_TIMEOUT))
                now = await self.now(session)
                schedule = await claim_due(session, now, excluded)
                if schedule is None:
                    return None
                claimed = schedule.id
                return await process_due(session, self.ctx, schedule, now)
        except LOOP_ERRORS:
            raise
        except Exception:
            if claimed is None:
                raise
            # A bug or a row the code cannot handle (rolled back): do not let it block the rest.
            log.exception("schedule.fire_crashed", schedule_id=str(claimed))
            self._quarantine[claimed] = time.monotonic() + QUARANTINE_S
            return []

    async def run_once(self) -> int:
        """One pass: fire everything due; returns how many jobs were created."""
        created = 0
        self.more_due = False
        for _ in range(MAX_PER_PASS):
            jobs = await self.fire_next()
            if jobs is None:
                return created
            if jobs:
                created += len(jobs)
                await self._enqueue(jobs)
        self.more_due = True
        return created

    async def _enqueue(self, jobs: list[NewJob]) -> None:
        try:
            await self.state.job_queue.enqueue(jobs, "schedule")
        except (RedisError, OSError) as exc:
            # The rows are committed: the reconciler enqueues them once Redis is back.
            log.warning("schedule.enqueue_deferred", count=len(jobs), error=describe(exc))

    async def sleep_s(self) -> float:
        """How long until the next instant is due, capped at the poll interval."""
        interval = self.state.settings.schedule_poll_interval_s
        async with self.state.sessionmaker() as session:
            earliest = await earliest_fire_at(session)
            if earliest is None:
                return interval
            wait = (earliest - await self.now(session)).total_seconds()
        if wait <= 0:
            return min(interval, BUSY_RECHECK_S)
        return max(min(wait, interval), MIN_SLEEP_S)

    async def loop(self) -> None:
        """Fire due schedules, forever; survives database and Redis outages."""
        while True:
            delay = self.state.settings.schedule_poll_interval_s
            try:
                await self.run_once()
                delay = 0.0 if self.more_due else await self.sleep_s()
            except LOOP_ERRORS as exc:
                log.warning("scheduler.failed", error=describe(exc))
            await asyncio.sleep(delay)


async def scheduler_loop(state: WorkerState) -> None:
    """The worker's background loop (worker/main.py BACKGROUND_LOOPS)."""
    await Scheduler(state).loop()

"""Group commit for single submissions: concurrent `POST /v1/jobs` requests share one committed
INSERT (the job store's: on PostgreSQL a single statement, shared/repositories/job_store_pg.py)
and one enqueue.

A request hands its validated row over and waits. One flush runs at a time: whatever arrived
while it ran goes in the next one, so an idle API adds no delay (a lone request is flushed at
once) and a busy one turns N round trips to PostgreSQL and Redis into one. The guarantees are
those of a single request: a job is answered 202 only after its row has committed, and it is
enqueued after that commit (a failed enqueue is repaired by the reconciler). If the flush fails,
every request in it gets the error (nothing of the batch committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shared.repositories.job import NewJob

MAX_FLUSH = 500  # rows per INSERT; more waiting simply go in the next flush

Pending = tuple[dict[str, Any], asyncio.Future[NewJob]]
Insert = Callable[[list[dict[str, Any]]], Awaitable[list[NewJob]]]


class Submitter:
    """One per API process (in AppState)."""

    def __init__(
        self, insert: Insert, after_commit: Callable[[Sequence[NewJob]], Awaitable[None]]
    ) -> None:
        """`insert` commits the rows it is given, all or none (the job store's)."""
        self.insert = insert
        self._after_commit = after_commit
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, row: dict[str, Any]) -> NewJob:
        """Insert one job row (in a shared transaction) and enqueue it; returns the job."""
        future: asyncio.Future[NewJob] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None or self._flusher.done():
            # A task of its own: a client that goes away must not cancel the others' flush.
            self._flusher = asyncio.create_task(self._flush_all())
        # shield: the caller's cancellation (a dropped connection) leaves the flush alone.
        return await asyncio.shield(future)

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_FLUSH], self._pending[MAX_FLUSH:]
            await self._flush(batch)

    async def _flush(self, batch: list[Pending]) -> None:
        try:
            jobs = await self.insert([row for row, _ in batch])
        except Exception as exc:  # every waiter gets the failure (an outage: a 503 each)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # a waiter that went away must not log it as unretrieved
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        try:
            await self._after_commit(jobs)
        finally:
            for (_, future), job in zip(batch, jobs, strict=True):
                if not future.done():
                    future.set_result(job)

    async def close(self) -> None:
        """Finish what was handed over (at shutdown)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

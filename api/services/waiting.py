"""Submit and wait (`?wait=`): a request waits on its jobs' events, then answers with their rows.

The wait reads the owner's event stream (shared/events.py) from a position taken *before* the
jobs were submitted, so no terminal event can slip by unseen; it holds a Redis connection (one of
the event streams' budget, `sse_max_streams`) and no database connection. When Redis is down or
the streams' budget is spent, the request does not wait: it answers 202 at once, as without
`?wait=`. Jobs already ended (an idempotent replay) need no wait at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated, Protocol

from pydantic import Field, TypeAdapter
from redis.exceptions import RedisError

from api.deps import AppState, request_session
from shared.events import TERMINAL_EVENTS, last_id, read_after
from shared.logging import describe, get_logger
from shared.models import TERMINAL_STATUSES, Job
from shared.repositories.job import get_jobs

log = get_logger(__name__)

MAX_WAIT_S = 60.0
WAIT_DESCRIPTION = (
    "Wait up to this many seconds (at most 60) for the job to end: 200 with the finished job "
    "if it does, else 202 with the job as it is then."
)
WAIT: TypeAdapter[float] = TypeAdapter(Annotated[float, Field(ge=0, le=MAX_WAIT_S)])
READ_COUNT = 500


class Submitted(Protocol):
    """A job as its submission answered it (a new row, or an idempotent replay's)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...


async def start_point(state: AppState, owner_id: uuid.UUID) -> str | None:
    """Where to read the owner's events from (taken before submitting); None: do not wait."""
    if state.open_streams >= state.settings.sse_max_streams:
        return None
    try:
        return await last_id(state.streams, owner_id)
    except (RedisError, OSError) as exc:
        log.warning("jobs.wait_unavailable", error=describe(exc))
        return None


async def wait_for_end(
    state: AppState, owner_id: uuid.UUID, job_ids: set[str], after: str, timeout_s: float
) -> bool:
    """True once each of `job_ids` has had a terminal event (succeeded, failed, cancelled)
    after stream position `after`; False when `timeout_s` passes first or Redis fails."""
    pending = set(job_ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    state.open_streams += 1
    try:
        while pending:
            remaining_ms = int((deadline - loop.time()) * 1000)
            if remaining_ms <= 0:
                return False
            events = await read_after(
                state.streams, owner_id, after, block_ms=remaining_ms, count=READ_COUNT
            )
            for ident, event in events:
                after = ident
                if event.get("type") in TERMINAL_EVENTS:
                    pending.discard(event.get("job_id", ""))
        return True
    except (RedisError, OSError) as exc:
        log.warning("jobs.wait_interrupted", error=describe(exc))
        return False
    finally:
        state.open_streams -= 1


async def settle(
    state: AppState,
    owner_id: uuid.UUID,
    jobs: Sequence[Submitted],
    after: str | None,
    timeout_s: float,
) -> tuple[list[Job] | None, bool]:
    """Wait for `jobs` (rows just submitted) to end: (their rows now, True if all ended).
    The rows are None when there was nothing to wait for or no way to wait (answer as is)."""
    open_ids = {str(job.id) for job in jobs if job.status not in TERMINAL_STATUSES}
    if not open_ids:
        return None, True
    if after is None or timeout_s <= 0:
        return None, False
    ended = await wait_for_end(state, owner_id, open_ids, after, timeout_s)
    ids = [job.id for job in jobs]
    async with request_session(state) as session:
        rows = await get_jobs(session, owner_id, ids)
    if not ended:  # it may have ended between the last read and this one
        ended = all(row.status in TERMINAL_STATUSES for row in rows)
    return rows, ended

"""Live job events as Server-Sent Events: one job's, or all of the owner's (filterable).

A stream's ids are positions in the owner's event stream (shared/events.py): a client that
reconnects with `Last-Event-ID` gets everything after it that is still kept (at least the last
10 minutes). Streams hold no database connection while they wait.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from api.deps import AppState, PrincipalDep, SessionDep, StateDep
from api.errors import error_responses
from api.schemas.jobs import JobKindName
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.events import TERMINAL_EVENTS, id_at, last_id, parse_event_id, read_after
from shared.logging import describe, get_logger
from shared.models import TERMINAL_STATUSES, Job
from shared.repositories.job import get_job
from shared.specs import JOB_KINDS

log = get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["events"])

EventType = Literal["queued", "started", "progress", "retrying", "succeeded", "failed", "cancelled"]
JobKind = JobKindName
assert set(JobKind.__args__) == set(JOB_KINDS)  # type: ignore[attr-defined]

REPLAY_MARGIN_S = 60.0  # clocks of the API, the workers and Redis differ a little
RECONNECT_MS = 2000
READ_COUNT = 500

_SSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream: `id` (the position to resume from), `event` (the "
        "type) and `data` (JSON: id, type, job_id, kind, queue, status, attempt, at, and "
        "reason, error, progress or run_after where they apply). Lines starting with `:` "
        "are heartbeats.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
LastEventId = Annotated[
    str | None,
    Header(description="Resume after this event id (browsers send it when they reconnect)."),
]
LastEventIdQuery = Annotated[
    str | None,
    Query(
        alias="last_event_id",
        description="The same as the Last-Event-ID header, for clients that cannot set it.",
    ),
]


def _resume_point(header: str | None, query: str | None) -> str | None:
    given = header if header is not None else query
    if given is None or not given.strip():
        return None
    parsed = parse_event_id(given)
    if parsed is None:
        raise ValidationFailed(
            "Last-Event-ID must be an event id from this stream, like 1764167000000-0.",
            code="invalid_last_event_id",
        )
    return parsed


def _format(ident: str, event: dict[str, Any]) -> str:
    return f"id: {ident}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"


def _admit(state: AppState) -> None:
    if state.open_streams >= state.settings.sse_max_streams:
        raise ServiceUnavailable(
            "Too many event streams are open on this API process; retry later.",
            code="too_many_streams",
        )


async def _pump(
    state: AppState,
    owner_id: uuid.UUID,
    after: str,
    keep: Callable[[dict[str, Any]], bool],
    *,
    until_terminal: bool = False,
    prelude: list[str] | None = None,
) -> AsyncIterator[str]:
    state.open_streams += 1
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        for chunk in prelude or []:
            yield chunk
        heartbeat_s = state.settings.sse_heartbeat_s
        last_write = time.monotonic()
        while True:
            try:
                events = await read_after(
                    state.streams,
                    owner_id,
                    after,
                    block_ms=int(heartbeat_s * 1000),
                    count=READ_COUNT,
                )
            except (RedisError, OSError) as exc:
                log.warning("events.read_failed", error=describe(exc))
                yield ": the event store is unavailable; retrying\n\n"
                await asyncio.sleep(1.0)
                continue
            for ident, event in events:
                after = ident
                if keep(event):
                    yield _format(ident, event)
                    last_write = time.monotonic()
                    if until_terminal and event["type"] in TERMINAL_EVENTS:
                        return
            if time.monotonic() - last_write >= heartbeat_s:
                yield ": ping\n\n"
                last_write = time.monotonic()
    finally:
        state.open_streams -= 1


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={**_SSE, **error_responses(422)},
)
async def owner_events(
    state: StateDep,
    principal: PrincipalDep,
    kind: Annotated[list[JobKind] | None, Query(description="Only jobs of these kinds.")] = None,
    status: Annotated[list[EventType] | None, Query(description="Only these event types.")] = None,
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> StreamingResponse:
    """Every state change of the caller's jobs, as it happens (queued, started, progress,
    retrying, succeeded, failed, cancelled). Without Last-Event-ID the stream starts now."""
    _admit(state)
    after = _resume_point(last_event_id, last_event_id_query)
    if after is None:
        try:
            after = await last_id(state.streams, principal.owner_id)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("The event store (Redis) is unavailable.") from exc
    kinds, types = set(kind or ()), set(status or ())

    def keep(event: dict[str, Any]) -> bool:
        return (not kinds or event["kind"] in kinds) and (not types or event["type"] in types)

    return _sse(_pump(state, principal.owner_id, after, keep))


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **_SSE,
        204: {"description": "The job has ended and nothing after Last-Event-ID remains."},
        **error_responses(404, 422),
    },
)
async def job_events(
    job_id: uuid.UUID,
    state: StateDep,
    principal: PrincipalDep,
    session: SessionDep,
    last_event_id: LastEventId = None,
    last_event_id_query: LastEventIdQuery = None,
) -> Response:
    """One job's events, from its first (those of the last 10+ minutes are replayed) to the
    one that ends it (succeeded, failed or cancelled), after which the stream closes. For a
    job that ended before the replay window, the stream sends one event with its final state."""
    job = await get_job(session, principal.owner_id, job_id)
    await session.close()  # a stream must not hold a database connection
    _admit(state)
    resume = _resume_point(last_event_id, last_event_id_query)
    ended = job.status in TERMINAL_STATUSES
    key = str(job.id)

    def keep(event: dict[str, Any]) -> bool:
        return bool(event["job_id"] == key)

    after = resume or id_at(job.created_at.timestamp() - REPLAY_MARGIN_S)
    prelude: list[str] = []
    if ended:
        try:
            seen = await _replay(state, principal.owner_id, after, keep)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("The event store (Redis) is unavailable.") from exc
        if not seen and resume is not None:
            return Response(status_code=204)  # told everything already: EventSource stops
        if not any(event["type"] in TERMINAL_EVENTS for _, event in seen):
            seen.append(("", _final_state(job)))  # its events are older than the window
        prelude = [_format(ident, event) if ident else _unnumbered(event) for ident, event in seen]
        return _sse(_finite(prelude))
    return _sse(_pump(state, principal.owner_id, after, keep, until_terminal=True))


async def _replay(
    state: AppState, owner_id: uuid.UUID, after: str, keep: Callable[[dict[str, Any]], bool]
) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    while True:
        events = await read_after(state.streams, owner_id, after, block_ms=None, count=READ_COUNT)
        found += [(ident, event) for ident, event in events if keep(event)]
        if len(events) < READ_COUNT:
            return found
        after = events[-1][0]


async def _finite(chunks: list[str]) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    for chunk in chunks:
        yield chunk


def _final_state(job: Job) -> dict[str, Any]:
    return {
        "type": job.status,
        "job_id": str(job.id),
        "kind": job.kind,
        "queue": job.queue,
        "status": job.status,
        "attempt": job.attempts,
        "at": job.finished_at.timestamp() if job.finished_at else time.time(),
        "error": job.error,
        "replayed_from": "job",
    }


def _unnumbered(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

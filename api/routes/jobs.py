"""Jobs: submit (one or a batch), read, list and search, attempts, cancel, retry (one or
the failed ones that match)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import StringConstraints, TypeAdapter

from api.deps import AppState, PrincipalDep, SessionDep, StateDep, authenticate, bearer
from api.direct import documented, header, json_body, query
from api.errors import error_responses
from api.schemas.jobs import (
    AttemptList,
    AttemptOut,
    BatchIn,
    BatchOut,
    BulkRetryIn,
    BulkRetryOut,
    JobKindName,
    JobList,
    JobOut,
    JobStatusName,
    JobWarning,
)
from api.schemas.pagination import Cursor
from api.services.retry import retry_failed
from api.services.submit import enqueue_jobs, submit_batch, submit_one
from api.services.waiting import WAIT, WAIT_DESCRIPTION, settle, start_point
from shared.errors import ValidationFailed
from shared.events import JobEvent
from shared.models import TERMINAL_STATUSES, Job
from shared.repositories import job as jobs
from shared.repositories import job_list
from shared.repositories.frontier import crawl_progress
from shared.repositories.job import NewJob
from shared.repositories.job_list import SEARCH_WINDOW, JobFilters
from shared.specs import AnyJobSpec, JobSpec, queue_for

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

SPEC: TypeAdapter[AnyJobSpec] = TypeAdapter(JobSpec)
IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(max_length=200, pattern=r"^[\x21-\x7e]+$")]
)
SUBMIT_DOCS = documented(
    body=SPEC,
    headers={
        "Idempotency-Key": (
            IDEMPOTENCY_KEY,
            "Repeat a request safely: the same key returns the original job.",
        )
    },
    security_scheme=bearer.scheme_name,
    query={"wait": (WAIT, WAIT_DESCRIPTION)},
)
WaitQuery = Annotated[float | None, Query(ge=0, le=60, description=WAIT_DESCRIPTION)]
_ENDED: dict[int | str, dict[str, Any]] = {
    200: {"model": JobOut, "description": "The job ended within `wait`: the finished job."}
}
_BATCH_ENDED: dict[int | str, dict[str, Any]] = {
    200: {"model": BatchOut, "description": "Every job ended within `wait`: the finished jobs."}
}


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={**_ENDED, **error_responses(400, 404, 409, 413, 422, 429)},
    openapi_extra=SUBMIT_DOCS,
)
async def submit_job(request: Request) -> Response:
    """Queue a job. The row is written before the job is enqueued, so an accepted job is
    never lost; with `Idempotency-Key`, a repeat returns the original job (a different body
    under the same key is a 409). With `?wait=`, answers 200 with the finished job if it ends
    within that many seconds."""
    # A direct route (api/direct.py): the parameters above are parsed here, not by FastAPI.
    state, principal = await authenticate(request)
    spec = await json_body(request, SPEC)
    idempotency_key = header(request, "Idempotency-Key", IDEMPOTENCY_KEY)
    wait_s = query(request, "wait", WAIT) or 0.0
    after = await start_point(state, principal.owner_id) if wait_s else None
    job, created = await submit_one(state, principal, spec, idempotency_key)
    (warnings,) = await queue_warnings(state, [spec])
    ended = False
    if wait_s:  # waits even when no live worker seemed to serve the queue: one may start
        rows, ended = await settle(state, principal.owner_id, [job], after, wait_s)
        job = rows[0] if rows else job
    out = JobOut.model_validate(job)
    out.warnings = [] if ended else warnings
    return Response(
        out.model_dump_json(),
        status_code=200 if ended else 202,
        media_type="application/json",
        headers=None if created else {"Idempotent-Replayed": "true"},
    )


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchOut,
    responses={**_BATCH_ENDED, **error_responses(400, 404, 413, 422, 429)},
)
async def submit_jobs(
    body: BatchIn,
    state: StateDep,
    session: SessionDep,
    principal: PrincipalDep,
    wait: WaitQuery = None,
) -> Response:
    """Queue up to 1,000 jobs in one transaction; all or none. Answers in the given order.
    With `?wait=`, answers 200 with the finished jobs if all of them end within that many
    seconds, else 202 with the jobs as they are then."""
    warnings = await queue_warnings(state, body.jobs)

    def answer(created: Sequence[Job | NewJob]) -> str:
        # One validation of the lot, serialized here (FastAPI would validate the answer
        # again), while the database writes the rows.
        out = BatchOut.model_validate({"jobs": created})
        for job, job_warnings in zip(out.jobs, warnings, strict=True):
            job.warnings = [] if job.status in TERMINAL_STATUSES else job_warnings
        return out.model_dump_json()

    if not wait:
        answered = await submit_batch(state, session, principal, body.jobs, answer)
        return Response(answered, status_code=202, media_type="application/json")
    after = await start_point(state, principal.owner_id)
    created = await submit_batch(state, session, principal, body.jobs, list)
    rows, ended = await settle(state, principal.owner_id, created, after, wait)
    return Response(
        answer(rows or created), status_code=200 if ended else 202, media_type="application/json"
    )


async def queue_warnings(state: AppState, specs: Sequence[AnyJobSpec]) -> list[list[JobWarning]]:
    """Per spec: `no_live_worker` if no live worker serves its queue now."""
    queues = [queue_for(spec) for spec in specs]
    unserved = set(await state.live_queues.unserved(set(queues)))
    return [
        [
            JobWarning(
                code="no_live_worker",
                message=f"No live worker serves the {queue!r} queue now: the job waits, "
                f"queued, until one starts (outrider worker --queue {queue}).",
            )
        ]
        if queue in unserved
        else []
        for queue in queues
    ]


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        loc = ["query", name]
        problem = {"loc": loc, "msg": "Datetime out of range", "type": "datetime_range"}
        raise ValidationFailed(f"`{name}` is out of range.", details=[problem]) from exc


Search = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=2048,
        description="A job id, or the start of one (like the 8 characters the dashboard "
        "shows), or a piece of the job's URL (case-insensitive). Short of a whole id, a search "
        f"reads at most {SEARCH_WINDOW:,} jobs per page, so a page may hold fewer than `limit` "
        "jobs while `next_cursor` is set: follow it to search on.",
    ),
]
Statuses = Annotated[
    list[JobStatusName] | None,
    Query(description="Repeat to combine: `?status=failed&status=cancelled`."),
]


@router.get("", response_model=JobList, responses=error_responses(400, 422))
async def list_jobs(
    state: StateDep,
    principal: PrincipalDep,
    status: Statuses = None,
    kind: Annotated[
        JobKindName | None, Query(description="A job kind (422 `unknown_kind` if none).")
    ] = None,
    agent_id: uuid.UUID | None = None,
    parent_id: Annotated[
        uuid.UUID | None, Query(description="A crawl's id: its pages' jobs.")
    ] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: Search = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    """The caller's jobs, newest first; follow `next_cursor` for the next page."""
    filters = JobFilters(
        statuses=tuple(sorted(set(status or ()))),
        kind=kind,
        agent_id=agent_id,
        parent_id=parent_id,
        created_after=_utc(created_after, "created_after"),
        created_before=_utc(created_before, "created_before"),
        q=q,
    )
    async with state.sessionmaker() as session:
        rows, next_cursor = await job_list.list_jobs(
            session, principal.owner_id, filters, cursor, limit
        )
    return JobList(items=[JobOut.model_validate(j) for j in rows], next_cursor=next_cursor)


@router.post("/retry", response_model=BulkRetryOut, responses=error_responses(400, 413, 422))
async def retry_failed_jobs(
    body: BulkRetryIn, state: StateDep, principal: PrincipalDep
) -> BulkRetryOut:
    """Queue again, each with a fresh attempt budget, the caller's failed jobs that match the
    filters (those of GET /v1/jobs), newest first, at most `limit` of them; `more` says that
    further failed jobs match (call again)."""
    filters = JobFilters(
        kind=body.kind,
        agent_id=body.agent_id,
        created_after=_utc(body.created_after, "created_after"),
        created_before=_utc(body.created_before, "created_before"),
        q=body.q,
    )
    retried, more = await retry_failed(state, principal.owner_id, filters, body.limit)
    return BulkRetryOut(retried=len(retried), job_ids=[job.id for job in retried], more=more)


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404, 422))
async def get_job(job_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> JobOut:
    """A job; a running crawl's `result` counts its pages as they are now."""
    async with state.sessionmaker() as session:
        job = await jobs.get_job(session, principal.owner_id, job_id)
        progress = await crawl_progress(session, job)
    out = JobOut.model_validate(job)
    return out if progress is None else out.model_copy(update={"result": progress})


@router.get("/{job_id}/attempts", response_model=AttemptList, responses=error_responses(404, 422))
async def get_attempts(job_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> AttemptList:
    """Every attempt: worker, start, end, outcome and error code."""
    async with state.sessionmaker() as session:
        job = await jobs.get_job(session, principal.owner_id, job_id)
        attempts = await jobs.list_attempts(session, job)
    return AttemptList(items=[AttemptOut.model_validate(a) for a in attempts])


@router.post("/{job_id}/cancel", response_model=JobOut, responses=error_responses(404, 409, 422))
async def cancel_job(job_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> JobOut:
    """Cancel a queued or running job; a running one stops within about a second."""
    async with state.sessionmaker.begin() as session:
        job = await jobs.get_job(session, principal.owner_id, job_id)
        job = await jobs.cancel_job(session, job)
    await state.events.publish([JobEvent.of(job, "cancelled", job.status)])
    return JobOut.model_validate(job)


@router.post("/{job_id}/retry", response_model=JobOut, responses=error_responses(404, 409, 422))
async def retry_job(job_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> JobOut:
    """Queue a failed or cancelled job again, with a fresh attempt budget."""
    async with state.sessionmaker.begin() as session:
        job = await jobs.get_job(session, principal.owner_id, job_id)
        job = await jobs.retry_job(session, job)
    await enqueue_jobs(state, [job], reason="retry")
    return JobOut.model_validate(job)

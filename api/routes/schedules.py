"""Schedules: cron-style jobs fired exactly once per instant by the workers' scheduler."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.jobs import JobOut
from api.schemas.pagination import Cursor
from api.schemas.schedules import (
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    ScheduleRunList,
    ScheduleRunOut,
    ScheduleUpdate,
)
from api.services import schedules as service
from api.services.submit import enqueue_jobs
from shared.models import utcnow
from shared.repositories import schedule as schedules

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


@router.post(
    "",
    status_code=201,
    response_model=ScheduleOut,
    responses=error_responses(400, 404, 413, 422),
)
async def create_schedule(
    body: ScheduleCreate, state: StateDep, principal: PrincipalDep
) -> ScheduleOut:
    """Create a schedule. 422 with `invalid_cron`, `invalid_timezone`,
    `schedule_interval_too_short`, `schedule_limit_reached`, or what POST /v1/jobs would
    refuse in the job (`agent_not_found`, `invalid_url`, ...)."""
    return await service.create_schedule(state, principal, body)


@router.get("", response_model=ScheduleList, responses=error_responses(400, 422))
async def list_schedules(
    state: StateDep,
    principal: PrincipalDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ScheduleList:
    """The caller's schedules, newest first."""
    async with state.sessionmaker() as session:
        rows, next_cursor = await schedules.list_schedules(
            session, principal.owner_id, cursor, limit
        )
    now = utcnow()
    return ScheduleList(items=[service.to_out(s, now) for s in rows], next_cursor=next_cursor)


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=error_responses(404, 422))
async def get_schedule(
    schedule_id: uuid.UUID, state: StateDep, principal: PrincipalDep
) -> ScheduleOut:
    async with state.sessionmaker() as session:
        schedule = await schedules.get_schedule(session, principal.owner_id, schedule_id)
    return service.to_out(schedule)


@router.patch(
    "/{schedule_id}", response_model=ScheduleOut, responses=error_responses(400, 404, 413, 422)
)
async def update_schedule(
    schedule_id: uuid.UUID, body: ScheduleUpdate, state: StateDep, principal: PrincipalDep
) -> ScheduleOut:
    """Change some fields; `"enabled": false` pauses, `true` resumes from the next instant."""
    return await service.update_schedule(state, principal, schedule_id, body)


@router.delete(
    "/{schedule_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 422),
)
async def delete_schedule(
    schedule_id: uuid.UUID, state: StateDep, principal: PrincipalDep
) -> Response:
    """Delete a schedule; it never fires again. Jobs it fired are kept."""
    async with state.sessionmaker.begin() as session:
        schedule = await schedules.get_schedule(
            session, principal.owner_id, schedule_id, for_update=True
        )
        await schedules.delete_schedule(session, schedule)
    return Response(status_code=204)


@router.post(
    "/{schedule_id}/run",
    status_code=202,
    response_model=JobOut,
    responses=error_responses(404, 409, 422),
)
async def run_schedule(schedule_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> JobOut:
    """Fire the schedule's job now (paused or not, whatever `overlap` says). The job links
    back with `schedule_id` and `schedule_instant`; the run appears in the history."""
    job = await service.run_now(state, principal, schedule_id)
    await enqueue_jobs(state, [job], reason="schedule")
    return JobOut.model_validate(job)


@router.get(
    "/{schedule_id}/runs",
    response_model=ScheduleRunList,
    responses=error_responses(400, 404, 422),
)
async def list_runs(
    schedule_id: uuid.UUID,
    state: StateDep,
    principal: PrincipalDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ScheduleRunList:
    """The schedule's runs, newest instant first: fired (with the job and its status) or
    skipped (with the reason)."""
    async with state.sessionmaker() as session:
        schedule = await schedules.get_schedule(session, principal.owner_id, schedule_id)
        rows, next_cursor = await schedules.list_runs(session, schedule.id, cursor, limit)
    items = [
        ScheduleRunOut(
            instant=run.instant,
            job_id=run.job_id,
            status=run.status,
            skipped_because=run.skipped_because,
            trigger=run.trigger,
            job_status=job_status,
            created_at=run.created_at,
        )
        for run, job_status in rows
    ]
    return ScheduleRunList(items=items, next_cursor=next_cursor)

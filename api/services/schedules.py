"""Schedules as the API manages them: validate cron, timezone, template and limits; run now.

`next_fire_at` is computed on the database's clock (shared/clock.py) so an API host with a
wrong clock cannot move a schedule's cursor; a cursor moved onto an instant already fired is
harmless (its run row exists, so it is not fired again).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AppState, Principal
from api.schemas.schedules import ScheduleCreate, ScheduleOut, ScheduleUpdate
from shared.clock import database_now
from shared.cron import CronSchedule
from shared.db import is_postgres
from shared.errors import ValidationFailed
from shared.ids import new_id
from shared.models import Schedule, ScheduleTrigger, utcnow
from shared.repositories.job import NewJob
from shared.repositories.schedule import count_live, get_schedule
from shared.services.job_rows import prepare_job_row
from shared.services.schedules import FireContext, fire_instant
from shared.specs import AnyJobSpec

UPCOMING = 5


def parse_cron(state: AppState, cron: str, timezone: str, now: datetime) -> CronSchedule:
    """The validated expression; 422 `invalid_cron`, `invalid_timezone` or
    `schedule_interval_too_short`."""
    parsed = CronSchedule.parse(cron, timezone)
    limit = state.settings.schedule_min_interval_s
    shortest = parsed.shortest_interval_s(now, below=limit)
    if shortest < limit:
        raise ValidationFailed(
            f"This schedule fires {shortest:g} s apart at its closest; the shortest interval "
            f"allowed is {limit:g} s.",
            code="schedule_interval_too_short",
            details={"shortest_interval_s": shortest, "min_interval_s": limit},
        )
    return parsed


async def _check_template(
    state: AppState, session: AsyncSession, owner_id: uuid.UUID, spec: AnyJobSpec
) -> dict[str, Any]:
    """What POST /v1/jobs would check (agent, destination, limits), so a schedule that could
    never fire is refused now; the stored template is the spec as given."""
    await prepare_job_row(session, state.settings, state.policy, owner_id, spec)
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def to_out(schedule: Schedule, now: datetime | None = None) -> ScheduleOut:
    """The API view, with the next five fire times after `now` (default: this host's clock)."""
    upcoming: list[datetime] = []
    if schedule.enabled:
        cron = CronSchedule.parse(schedule.cron, schedule.timezone)
        upcoming = cron.upcoming(now or utcnow(), UPCOMING)
    return ScheduleOut(
        id=schedule.id,
        cron=schedule.cron,
        timezone=schedule.timezone,
        job=schedule.job,
        enabled=schedule.enabled,
        overlap=schedule.overlap,
        misfire=schedule.misfire,
        next_fire_times=upcoming,
        missed_count=schedule.missed_count,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


async def create_schedule(
    state: AppState, principal: Principal, body: ScheduleCreate
) -> ScheduleOut:
    """Insert a schedule after every check; 422 `schedule_limit_reached` past the per-owner
    limit (the owner row is locked on PostgreSQL, so concurrent creations cannot overshoot)."""
    cron_text = " ".join(body.cron.split())
    async with state.sessionmaker.begin() as session:
        now = await database_now(session)
        cron = parse_cron(state, cron_text, body.timezone, now)
        limit = state.settings.schedule_max_per_owner
        if await count_live(session, principal.owner_id, lock=is_postgres(session)) >= limit:
            raise ValidationFailed(
                f"An owner may have at most {limit} schedules.",
                code="schedule_limit_reached",
                details={"limit": limit},
            )
        template = await _check_template(state, session, principal.owner_id, body.job)
        schedule = Schedule(
            id=new_id(),
            owner_id=principal.owner_id,
            cron=cron_text,
            timezone=body.timezone,
            job=template,
            enabled=body.enabled,
            overlap=body.overlap,
            misfire=body.misfire,
            next_fire_at=cron.next_after(now),
            missed_count=0,
            created_at=now,
            updated_at=now,
        )
        session.add(schedule)
        await session.flush()
    return to_out(schedule, now)


async def update_schedule(
    state: AppState, principal: Principal, schedule_id: uuid.UUID, body: ScheduleUpdate
) -> ScheduleOut:
    """Apply a partial update (see ScheduleUpdate)."""
    changes = body.model_dump(exclude_none=True, exclude={"job"})
    async with state.sessionmaker.begin() as session:
        schedule = await get_schedule(session, principal.owner_id, schedule_id, for_update=True)
        now = await database_now(session)
        if "cron" in changes:
            changes["cron"] = " ".join(changes["cron"].split())
        cron_text = changes.get("cron", schedule.cron)
        timezone = changes.get("timezone", schedule.timezone)
        moved = (cron_text, timezone) != (schedule.cron, schedule.timezone)
        cron = (
            parse_cron(state, cron_text, timezone, now)
            if moved
            else CronSchedule.parse(cron_text, timezone)
        )
        if body.job is not None:
            schedule.job = await _check_template(state, session, principal.owner_id, body.job)
        restart = moved or (changes.get("enabled") is True and not schedule.enabled)
        for field, value in changes.items():
            setattr(schedule, field, value)
        if restart:
            schedule.next_fire_at = cron.next_after(now)
        schedule.updated_at = now
        await session.flush()
    return to_out(schedule, now)


async def run_now(state: AppState, principal: Principal, schedule_id: uuid.UUID) -> NewJob:
    """Fire the schedule's job now (its instant is the database's now), paused or not, and
    whatever `overlap` says: the caller asked for it. Enqueued after the commit."""
    ctx = FireContext(settings=state.settings, policy=state.policy)
    async with state.sessionmaker.begin() as session:
        schedule = await get_schedule(session, principal.owner_id, schedule_id, for_update=True)
        now = await database_now(session)
        job = await fire_instant(session, ctx, schedule, now, now, trigger=ScheduleTrigger.MANUAL)
    assert job is not None  # a manual run raises instead of skipping
    return job

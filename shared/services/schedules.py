"""Firing schedules: which instants are due, what `misfire` and `overlap` do, and the writes.

Exactly once per (schedule, instant), however many workers run the scheduler and whatever their
clocks say, because:
1. instants come from the cron expression (shared/cron.py), never from a clock, and "due" is
   judged on the clock all workers share (shared/clock.py), so a skewed worker neither fires
   early nor invents an instant;
2. a worker takes a due schedule with FOR UPDATE SKIP LOCKED (PostgreSQL), so two workers do
   not even try the same schedule at once;
3. it moves the schedule's cursor (`next_fire_at`) with a compare-and-set, so a worker holding
   a stale row changes nothing;
4. each instant is a `schedule_run` row, UNIQUE(schedule_id, instant), inserted with ON CONFLICT
   DO NOTHING before its job; and the job itself is UNIQUE(schedule_id, schedule_instant).
All of it is one transaction: a worker killed mid-way rolls back, the instant stays due and the
next pass (of any worker) fires it. The job is enqueued after the commit; a lost enqueue is
repaired by the reconciler like any job's.

Misfire: an instant more than `schedule_misfire_grace_s` late (no worker ran) is missed.
`skip` counts missed instants in `missed_count` and fires only the timely ones; `run_once`
fires the latest due instant once and counts the others. Missed instants get no run rows (an
outage of a week would be ten thousand of them). Overlap `skip`: an instant whose schedule
still has a queued or running job is recorded as a skipped run (`skipped_because: overlap`).
A template that stopped validating (agent deleted, destination now refused) is a skipped run
too, with the error code as the reason, so a broken schedule does not spin.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.cron import CronSchedule
from shared.egress import EgressPolicy
from shared.errors import AppError, Conflict, ValidationFailed
from shared.logging import get_logger
from shared.models import (
    Schedule,
    ScheduleMisfire,
    ScheduleOverlap,
    ScheduleRunStatus,
    ScheduleTrigger,
)
from shared.repositories.job import NewJob, insert_jobs
from shared.repositories.schedule import advance, attach_job, has_active_job, insert_run
from shared.services.job_rows import prepare_job_row
from shared.settings import Settings
from shared.specs import AnyJobSpec, JobSpec

log = get_logger(__name__)

TEMPLATE: TypeAdapter[AnyJobSpec] = TypeAdapter(JobSpec)
CHUNK = 1000
"""At most this many instants are looked at per schedule per pass (a long outage of a frequent
schedule is counted over a few passes instead of blocking one)."""


@dataclass(frozen=True)
class FireContext:
    """What firing a job needs from the process it runs in."""

    settings: Settings
    policy: EgressPolicy


@dataclass(frozen=True)
class Plan:
    """What to do with a due schedule now."""

    fire: list[datetime]
    missed: int
    next_fire_at: datetime


def plan_due(
    cron: CronSchedule,
    next_fire_at: datetime,
    now: datetime,
    misfire: str,
    grace_s: float,
    limit: int = CHUNK,
) -> Plan:
    """Split the instants from `next_fire_at` (due by definition) up to `now` into those to fire
    and those missed, and find the next cursor."""
    times = itertools.chain([next_fire_at], cron.fire_times(next_fire_at))
    due: list[datetime] = []
    upcoming = next(times)
    while upcoming <= now and len(due) < limit:
        due.append(upcoming)
        upcoming = next(times)
    complete = upcoming > now
    late = [instant for instant in due if instant < now - timedelta(seconds=grace_s)]
    if late and misfire == ScheduleMisfire.RUN_ONCE:
        if not complete:  # the catch-up run is for the latest instant, on a later pass
            return Plan(fire=[], missed=len(due), next_fire_at=upcoming)
        return Plan(fire=due[-1:], missed=len(due) - 1, next_fire_at=upcoming)
    return Plan(fire=due[len(late) :], missed=len(late), next_fire_at=upcoming)


async def template_row(
    session: AsyncSession, ctx: FireContext, schedule: Schedule
) -> dict[str, object]:
    """The job row the schedule's template makes now (the agent and the egress policy may have
    changed since the schedule was saved); ValidationFailed if it no longer passes."""
    try:
        spec = TEMPLATE.validate_python(schedule.job)
    except ValidationError as exc:
        raise ValidationFailed(
            "The schedule's job template is not a valid job spec.", code="invalid_job"
        ) from exc
    return await prepare_job_row(session, ctx.settings, ctx.policy, schedule.owner_id, spec)


async def fire_instant(
    session: AsyncSession,
    ctx: FireContext,
    schedule: Schedule,
    instant: datetime,
    now: datetime,
    *,
    trigger: ScheduleTrigger = ScheduleTrigger.SCHEDULE,
) -> NewJob | None:
    """Record the instant and create its queued job; None if skipped or already fired.
    A manual run ignores `overlap` and raises what the scheduler records as a skipped run."""
    manual = trigger == ScheduleTrigger.MANUAL
    if (
        not manual
        and schedule.overlap == ScheduleOverlap.SKIP
        and await has_active_job(session, schedule.id)
    ):
        await _skip(session, schedule, instant, "overlap")
        return None
    try:
        row = await template_row(session, ctx, schedule)
    except AppError as exc:
        if manual:
            raise
        await _skip(session, schedule, instant, exc.code)
        return None
    run_id = await insert_run(
        session, schedule.id, instant, trigger=trigger, status=ScheduleRunStatus.FIRED
    )
    if run_id is None:
        if manual:
            raise Conflict("Another run of this schedule has the same instant; try again.")
        log.warning("schedule.instant_already_fired", schedule_id=str(schedule.id))
        return None
    row.update(schedule_id=schedule.id, schedule_instant=instant)
    (job,) = await insert_jobs(session, [row], now=now)
    await attach_job(session, run_id, job.id)
    log.info(
        "schedule.fired",
        schedule_id=str(schedule.id),
        instant=instant.isoformat(),
        job_id=str(job.id),
        trigger=str(trigger),
    )
    return job


async def _skip(session: AsyncSession, schedule: Schedule, instant: datetime, why: str) -> None:
    await insert_run(
        session,
        schedule.id,
        instant,
        trigger=ScheduleTrigger.SCHEDULE,
        status=ScheduleRunStatus.SKIPPED,
        skipped_because=why,
    )
    log.info(
        "schedule.skipped", schedule_id=str(schedule.id), instant=instant.isoformat(), reason=why
    )


async def process_due(
    session: AsyncSession, ctx: FireContext, schedule: Schedule, now: datetime
) -> list[NewJob]:
    """Fire what is due of a schedule the caller has claimed; [] if another worker got there
    first. The caller commits, then enqueues the returned jobs."""
    cron = CronSchedule.parse(schedule.cron, schedule.timezone)
    plan = plan_due(
        cron, schedule.next_fire_at, now, schedule.misfire, ctx.settings.schedule_misfire_grace_s
    )
    if not await advance(
        session, schedule.id, schedule.next_fire_at, plan.next_fire_at, plan.missed
    ):
        return []
    if plan.missed:
        log.warning(
            "schedule.misfired",
            schedule_id=str(schedule.id),
            missed=plan.missed,
            policy=schedule.misfire,
        )
    jobs = []
    for instant in plan.fire:
        job = await fire_instant(session, ctx, schedule, instant, now)
        if job is not None:
            jobs.append(job)
    return jobs

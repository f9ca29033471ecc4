"""Schedules and their runs. Owner-scoped reads for the API; due selection and the guarded
writes that make firing exactly-once for the scheduler (see shared/services/schedules.py).

Deletion is soft (jobs keep pointing at the schedule that fired them); a deleted schedule is
also disabled, so the due query (`enabled AND next_fire_at <= now`) never sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import is_postgres
from shared.errors import NotFound
from shared.ids import new_id
from shared.models import Job, Owner, Schedule, ScheduleRun, utcnow
from shared.repositories.pagination import after_cursor, decode_cursor, encode_cursor

ACTIVE_JOB = text("job.status IN ('queued', 'running')")  # matches ix_job_schedule_active


async def get_schedule(
    session: AsyncSession, owner_id: uuid.UUID, schedule_id: uuid.UUID, *, for_update: bool = False
) -> Schedule:
    """The owner's live schedule; NotFound for a missing, deleted or foreign one alike."""
    stmt = select(Schedule).where(
        Schedule.id == schedule_id, Schedule.owner_id == owner_id, Schedule.deleted_at.is_(None)
    )
    if for_update:
        stmt = stmt.with_for_update()
    schedule = await session.scalar(stmt)
    if schedule is None:
        raise NotFound("Schedule not found.")
    return schedule


async def count_live(session: AsyncSession, owner_id: uuid.UUID, *, lock: bool = False) -> int:
    """How many live schedules the owner has. With `lock`, the owner row is locked first
    (PostgreSQL), so concurrent creations count one after the other."""
    if lock:
        await session.execute(select(Owner.id).where(Owner.id == owner_id).with_for_update())
    count = await session.scalar(
        select(func.count())
        .select_from(Schedule)
        .where(Schedule.owner_id == owner_id, Schedule.deleted_at.is_(None))
    )
    return int(count or 0)


async def list_schedules(
    session: AsyncSession, owner_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[Schedule], str | None]:
    """One page of the owner's live schedules, newest first."""
    stmt = select(Schedule).where(Schedule.owner_id == owner_id, Schedule.deleted_at.is_(None))
    page = after_cursor(stmt, Schedule.created_at, Schedule.id, cursor, limit)
    rows = list((await session.scalars(page)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


async def list_all(session: AsyncSession, owner_name: str | None) -> list[tuple[Schedule, str]]:
    """Every live schedule with its owner's name (for operators: the CLI), by owner."""
    stmt = (
        select(Schedule, Owner.name)
        .join(Owner, Owner.id == Schedule.owner_id)
        .where(Schedule.deleted_at.is_(None))
        .order_by(Owner.name, Schedule.created_at, Schedule.id)
    )
    if owner_name is not None:
        stmt = stmt.where(Owner.name == owner_name)
    return [(row[0], row[1]) for row in await session.execute(stmt)]


async def delete_schedule(session: AsyncSession, schedule: Schedule) -> None:
    """Soft-delete: hidden from the API and never fired again."""
    schedule.enabled = False
    schedule.deleted_at = utcnow()
    await session.flush()


async def list_runs(
    session: AsyncSession, schedule_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[tuple[ScheduleRun, str | None]], str | None]:
    """One page of a schedule's runs, newest instant first, each with its job's status."""
    stmt = (
        select(ScheduleRun, Job.status)
        .outerjoin(Job, Job.id == ScheduleRun.job_id)
        .where(ScheduleRun.schedule_id == schedule_id)
    )
    if cursor:
        instant, run_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                ScheduleRun.instant < instant,
                and_(ScheduleRun.instant == instant, ScheduleRun.id < run_id),
            )
        )
    stmt = stmt.order_by(ScheduleRun.instant.desc(), ScheduleRun.id.desc()).limit(limit + 1)
    rows: list[tuple[ScheduleRun, str | None]] = [
        (row[0], row[1]) for row in await session.execute(stmt)
    ]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][0].instant, rows[-1][0].id)
    return rows, next_cursor


async def insert_run(
    session: AsyncSession,
    schedule_id: uuid.UUID,
    instant: datetime,
    *,
    trigger: str,
    status: str,
    skipped_because: str | None = None,
) -> uuid.UUID | None:
    """Record an instant; None if it is already recorded (the UNIQUE(schedule_id, instant)
    constraint: INSERT ... ON CONFLICT DO NOTHING, so the loser's transaction stays usable)."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
    stmt = (
        insert(ScheduleRun)
        .values(
            id=new_id(),
            schedule_id=schedule_id,
            instant=instant,
            trigger=trigger,
            status=status,
            skipped_because=skipped_because,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["schedule_id", "instant"])
        .returning(ScheduleRun.id)
    )
    run_id: uuid.UUID | None = (await session.execute(stmt)).scalar_one_or_none()
    return run_id


async def attach_job(session: AsyncSession, run_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Link a run to the job it fired."""
    await session.execute(update(ScheduleRun).where(ScheduleRun.id == run_id).values(job_id=job_id))


async def claim_due(
    session: AsyncSession, now: datetime, exclude: Collection[uuid.UUID] = ()
) -> Schedule | None:
    """The most overdue enabled schedule, locked for this transaction; rows other workers
    hold are skipped (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite has one writer anyway)."""
    stmt = (
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        stmt = stmt.where(Schedule.id.not_in(list(exclude)))
    return await session.scalar(stmt)


async def advance(
    session: AsyncSession,
    schedule_id: uuid.UUID,
    expected: datetime,
    next_fire_at: datetime,
    missed: int = 0,
) -> bool:
    """Move the schedule's cursor on, only if it still points at `expected` (compare and set):
    of two workers holding the same stale row, one moves it and the other gets False."""
    result = await session.execute(
        update(Schedule)
        .where(
            Schedule.id == schedule_id,
            Schedule.next_fire_at == expected,
            Schedule.enabled.is_(True),
        )
        .values(
            next_fire_at=next_fire_at,
            missed_count=Schedule.missed_count + missed,
            updated_at=Schedule.updated_at,  # firing is not an edit
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def has_active_job(session: AsyncSession, schedule_id: uuid.UUID) -> bool:
    """Whether a job of this schedule is still queued or running."""
    found = await session.scalar(
        select(Job.id).where(Job.schedule_id == schedule_id, ACTIVE_JOB).limit(1)
    )
    return found is not None


async def earliest_fire_at(session: AsyncSession) -> datetime | None:
    """When the next enabled schedule is due."""
    value: datetime | None = await session.scalar(
        select(func.min(Schedule.next_fire_at)).where(Schedule.enabled.is_(True))
    )
    return value

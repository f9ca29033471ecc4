"""`outrider schedules`: every schedule (or one owner's) with its next fire times, as a table."""

from __future__ import annotations

from datetime import datetime

from outrider.tables import format_table, when
from shared.cron import CronSchedule
from shared.db import create_engine, create_sessionmaker
from shared.models import Schedule, utcnow
from shared.repositories.schedule import list_all
from shared.settings import Settings

HEADERS = ("ID", "OWNER", "CRON", "TIMEZONE", "STATE", "MISSED", "NEXT FIRE TIMES (UTC)")


def _row(schedule: Schedule, owner: str, count: int, now: datetime) -> tuple[str, ...]:
    if schedule.enabled:
        upcoming = CronSchedule.parse(schedule.cron, schedule.timezone).upcoming(now, count)
        times, state = ", ".join(when(t) for t in upcoming), "active"
    else:
        times, state = "-", "paused"
    return (
        str(schedule.id),
        owner,
        schedule.cron,
        schedule.timezone,
        state,
        str(schedule.missed_count),
        times,
    )


async def render_schedules(settings: Settings, owner: str | None, count: int) -> str:
    """The table, or a one-line note when there is nothing to list."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await list_all(session, owner)
    finally:
        await engine.dispose()
    if not found:
        return f"No schedules for owner {owner!r}." if owner else "No schedules."
    now = utcnow()
    return format_table(HEADERS, [_row(schedule, name, count, now) for schedule, name in found])

"""Request and response bodies of the schedule routes (api/routes/schedules.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field

from shared.specs import JobSpec, RequestModel

Overlap = Literal["skip", "allow"]
Misfire = Literal["skip", "run_once"]

CRON_HELP = (
    "Five fields (minute hour day-of-month month day-of-week) or an alias: @yearly, "
    "@annually, @monthly, @weekly, @daily, @midnight, @hourly."
)
OVERLAP_HELP = (
    "`skip`: an instant is not started while this schedule's previous job is still queued or "
    "running (recorded as a skipped run); `allow`: it is."
)
MISFIRE_HELP = (
    "For instants missed while no worker ran: `skip` counts them in `missed_count`; "
    "`run_once` fires the latest of them once."
)


# What the schema states of `cron`: five fields of numbers, ranges, lists and steps in their
# ranges, or a macro (shared/cron.py also takes month and day names, and refuses an expression
# that never fires).
_MINUTE, _HOUR = r"[1-5]?[0-9]", r"(?:1?[0-9]|2[0-3])"
_DOM, _MONTH, _DOW = r"(?:[1-9]|[12][0-9]|3[01])", r"(?:[1-9]|1[0-2])", r"[0-7]"


def _cron_field(value: str) -> str:
    element = rf"(?:\*|{value}(?:-{value})?)(?:/[1-9][0-9]?)?"
    return rf"{element}(?:,{element})*"


CRON_PATTERN = (
    r"^(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " ".join(_cron_field(v) for v in (_MINUTE, _HOUR, _DOM, _MONTH, _DOW))
    + ")$"
)
CRON_SCHEMA: dict[str, Any] = {"pattern": CRON_PATTERN}
# The names this system's time zone database knows (shared/cron.py reads the same one).
TIMEZONE_SCHEMA: dict[str, Any] = {"enum": sorted(available_timezones() | {"UTC"})}


class ScheduleCreate(RequestModel):
    """A new schedule: fire `job` at every instant of `cron` in `timezone`."""

    cron: str = Field(
        min_length=1, max_length=200, description=CRON_HELP, json_schema_extra=CRON_SCHEMA
    )
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="An IANA timezone name.",
        json_schema_extra=TIMEZONE_SCHEMA,
    )
    job: JobSpec = Field(description="The job to fire: a job spec, as for POST /v1/jobs.")
    enabled: bool = True
    overlap: Overlap = Field(default="allow", description=OVERLAP_HELP)
    misfire: Misfire = Field(default="skip", description=MISFIRE_HELP)


class ScheduleUpdate(RequestModel):
    """A partial update; fields left out (or null) keep their value. Changing `cron` or
    `timezone`, or enabling a paused schedule, starts from the next instant after now."""

    cron: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description=CRON_HELP,
        json_schema_extra=CRON_SCHEMA,
    )
    timezone: str | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=TIMEZONE_SCHEMA
    )
    job: JobSpec | None = None
    enabled: bool | None = None
    overlap: Overlap | None = Field(default=None, description=OVERLAP_HELP)
    misfire: Misfire | None = Field(default=None, description=MISFIRE_HELP)


class ScheduleOut(BaseModel):
    id: uuid.UUID
    cron: str
    timezone: str
    job: dict[str, Any]
    enabled: bool
    overlap: Overlap
    misfire: Misfire
    next_fire_times: list[datetime] = Field(
        description="The next five fire times in UTC (empty while the schedule is paused)."
    )
    missed_count: int = Field(description="Instants missed while no worker ran (misfires).")
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None


class ScheduleRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    instant: datetime = Field(description="The instant (UTC) this run is for.")
    job_id: uuid.UUID | None
    status: Literal["fired", "skipped"]
    skipped_because: str | None = Field(
        description="Why no job was fired: `overlap`, or the error code of a job template "
        "that no longer validates (e.g. `agent_not_found`)."
    )
    trigger: Literal["schedule", "manual"] = Field(
        description="`manual` for POST /v1/schedules/{id}/run."
    )
    job_status: str | None = Field(description="The fired job's current status.")
    created_at: datetime


class ScheduleRunList(BaseModel):
    items: list[ScheduleRunOut]
    next_cursor: str | None

"""Request and response bodies of the schedule routes (api/routes/schedules.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

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


class ScheduleCreate(RequestModel):
    """A new schedule: fire `job` at every instant of `cron` in `timezone`."""

    cron: str = Field(min_length=1, max_length=200, description=CRON_HELP)
    timezone: str = Field(
        default="UTC", min_length=1, max_length=64, description="An IANA timezone name."
    )
    job: JobSpec = Field(description="The job to fire: a job spec, as for POST /v1/jobs.")
    enabled: bool = True
    overlap: Overlap = Field(default="allow", description=OVERLAP_HELP)
    misfire: Misfire = Field(default="skip", description=MISFIRE_HELP)


class ScheduleUpdate(RequestModel):
    """A partial update; fields left out (or null) keep their value. Changing `cron` or
    `timezone`, or enabling a paused schedule, starts from the next instant after now."""

    cron: str | None = Field(default=None, min_length=1, max_length=200, description=CRON_HELP)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
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

"""Bodies of the job routes: jobs, batches, bulk retry, attempts, webhook deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.specs import JobSpec, StrictModel


class JobErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool
    details: Any = None


JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKindName = Literal["http", "fetch", "render", "scrape", "crawl", "map"]
"""A job kind, as a filter: any other value is a 422 `unknown_kind` (api/errors.py)."""


class JobWarning(BaseModel):
    code: Literal["no_live_worker"]
    message: str


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: JobStatusName
    input: dict[str, Any]
    result: dict[str, Any] | None
    error: JobErrorOut | None
    attempts: int
    max_attempts: int
    timeout_s: float
    priority: int = 5
    agent_id: uuid.UUID
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    schedule_id: uuid.UUID | None = Field(
        default=None, description="The schedule that fired this job, if one did."
    )
    schedule_instant: datetime | None = Field(
        default=None, description="The schedule's instant this job was fired for (UTC)."
    )
    webhook_url: str | None = None
    parent_id: uuid.UUID | None = Field(default=None, description="A crawl's page: the crawl's id.")
    run_at: datetime | None = Field(
        default=None,
        validation_alias="run_after",
        description="While queued: when the job is due (a delayed job's `run_at`, or the end "
        "of a retry's backoff); null otherwise.",
    )
    warnings: list[JobWarning] = Field(
        default_factory=list,
        description="Set on a submit's answer: `no_live_worker` when no live worker serves "
        "the job's queue now (the job is queued and waits for one).",
    )

    @model_validator(mode="after")
    def _due_only_while_queued(self) -> JobOut:
        if self.status != "queued":
            self.run_at = None
        return self


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class BatchIn(StrictModel):  # each spec checks its own values (RequestModel)
    jobs: list[JobSpec] = Field(min_length=1, max_length=1000)


class BatchOut(BaseModel):
    jobs: list[JobOut]


class BulkRetryIn(StrictModel):
    """Which failed jobs to retry: the filters of GET /v1/jobs (status is `failed`)."""

    kind: JobKindName | None = Field(
        default=None, description="A job kind (422 `unknown_kind` if none)."
    )
    agent_id: uuid.UUID | None = None
    q: str | None = Field(
        default=None, min_length=1, max_length=2048, description="As in GET /v1/jobs."
    )
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = Field(default=100, ge=1, le=500, description="Retry at most this many.")


class BulkRetryOut(BaseModel):
    retried: int = Field(description="How many failed jobs were queued again.")
    job_ids: list[uuid.UUID] = Field(description="Those jobs, newest first.")
    more: bool = Field(description="Further failed jobs match: call again to retry them.")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: Literal[
        "running", "succeeded", "failed", "retrying", "cancelled", "interrupted", "lost", "deferred"
    ]
    error_code: str | None


class AttemptList(BaseModel):
    items: list[AttemptOut]


class DeliveryOut(BaseModel):
    """One webhook event for one URL, and how delivering it went."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event_id: uuid.UUID = Field(description="Also the payload's `id` and `Outrider-Event-Id`.")
    event: Literal["job.succeeded", "job.failed", "job.cancelled"]
    source: Literal["job", "agent"] = Field(description="Whose `webhook_url` this is.")
    url: str
    status: Literal["pending", "delivered", "failed", "blocked"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]

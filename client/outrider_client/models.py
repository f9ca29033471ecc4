"""The API's answers as typed models (checked field by field against the API's /openapi.json).

Models accept fields they do not know (a newer API may add some); statuses are plain strings
for the same reason. Each model names the OpenAPI schema it mirrors in `openapi_name`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Model(BaseModel):
    """Base of every answer model."""

    model_config = ConfigDict(extra="allow")
    openapi_name: ClassVar[str] = ""


class JobError(Model):
    """Why a job failed: a stable `code` (see the API's docs/errors.md), and if it is retried."""

    openapi_name: ClassVar[str] = "JobErrorOut"
    code: str
    message: str
    retryable: bool
    details: Any = None


class JobWarning(Model):
    """Something to know about a submitted job, e.g. `no_live_worker` (it waits for one)."""

    openapi_name: ClassVar[str] = "JobWarning"
    code: str
    message: str


class Job(Model):
    """A job: `status` is queued, running, succeeded, failed or cancelled."""

    openapi_name: ClassVar[str] = "JobOut"
    id: uuid.UUID
    kind: str
    status: str
    input: dict[str, Any]
    result: dict[str, Any] | None
    error: JobError | None
    attempts: int
    max_attempts: int
    timeout_s: float
    priority: int = 5
    agent_id: uuid.UUID
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    schedule_id: uuid.UUID | None = None
    schedule_instant: datetime | None = None
    webhook_url: str | None = None
    run_at: datetime | None = None
    warnings: list[JobWarning] = Field(default_factory=list)
    parent_id: uuid.UUID | None = None  # a crawl's page: the crawl's id

    @property
    def ended(self) -> bool:
        """True once the job has succeeded, failed or been cancelled."""
        return self.status in TERMINAL_STATUSES


class JobList(Model):
    openapi_name: ClassVar[str] = "JobList"
    items: list[Job]
    next_cursor: str | None


class Page(Model):
    """One URL of a crawl's frontier: `status` is pending, queued, running, succeeded,
    failed or skipped (then `skipped_because` says why)."""

    openapi_name: ClassVar[str] = "PageOut"
    url: str
    depth: int
    status: str
    job_id: uuid.UUID | None
    found_on: str | None
    skipped_because: str | None
    result: dict[str, Any] | None = None


class PageList(Model):
    openapi_name: ClassVar[str] = "PageList"
    items: list[Page]
    next_cursor: str | None


class Batch(Model):
    openapi_name: ClassVar[str] = "BatchOut"
    jobs: list[Job]


class Attempt(Model):
    openapi_name: ClassVar[str] = "AttemptOut"
    number: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error_code: str | None


class AttemptList(Model):
    openapi_name: ClassVar[str] = "AttemptList"
    items: list[Attempt]


class Delivery(Model):
    """One webhook event for one URL, and how delivering it went."""

    openapi_name: ClassVar[str] = "DeliveryOut"
    id: uuid.UUID
    event_id: uuid.UUID
    event: str
    source: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(Model):
    openapi_name: ClassVar[str] = "DeliveryList"
    items: list[Delivery]


class Agent(Model):
    """A named profile jobs run under: headers, secrets (by name), limits, domain rules."""

    openapi_name: ClassVar[str] = "AgentOut"
    id: uuid.UUID
    name: str
    is_default: bool
    headers: dict[str, Any]
    user_agent: str | None
    timeout_s: float | None
    max_attempts: int | None
    backoff_base_s: float | None
    backoff_max_s: float | None
    host_rate_per_s: float | None
    host_concurrency: int | None
    max_concurrency: int | None = None
    obey_robots: bool
    allowed_domains: list[str]
    blocked_domains: list[str]
    secret_names: list[str]
    webhook_url: str | None = None
    stealth: bool = False
    locale: str | None = None
    timezone: str | None = None
    proxies: list[dict[str, Any]] = []  # [{"url", "auth_secret"}]: no credentials
    proxy_rotation: str = "round_robin"
    has_webhook_secret: bool
    created_at: datetime
    updated_at: datetime


class AgentCreated(Agent):
    """A new agent, with its webhook signing secret (shown once)."""

    openapi_name: ClassVar[str] = "AgentCreated"
    webhook_secret: str | None


class AgentList(Model):
    openapi_name: ClassVar[str] = "AgentList"
    items: list[Agent]
    next_cursor: str | None


class Session(Model):
    """A session an agent keeps (its name and times; its cookies are never shown)."""

    openapi_name: ClassVar[str] = "SessionOut"
    name: str
    created_at: datetime
    updated_at: datetime


class SessionList(Model):
    openapi_name: ClassVar[str] = "SessionList"
    items: list[Session]


class WebhookSecret(Model):
    openapi_name: ClassVar[str] = "WebhookSecretOut"
    agent_id: uuid.UUID
    webhook_secret: str


class Schedule(Model):
    openapi_name: ClassVar[str] = "ScheduleOut"
    id: uuid.UUID
    cron: str
    timezone: str
    job: dict[str, Any]
    enabled: bool
    overlap: str
    misfire: str
    next_fire_times: list[datetime]
    missed_count: int
    created_at: datetime
    updated_at: datetime


class ScheduleList(Model):
    openapi_name: ClassVar[str] = "ScheduleList"
    items: list[Schedule]
    next_cursor: str | None


class ScheduleRun(Model):
    openapi_name: ClassVar[str] = "ScheduleRunOut"
    instant: datetime
    job_id: uuid.UUID | None
    status: str
    skipped_because: str | None
    trigger: str
    job_status: str | None
    created_at: datetime


class ScheduleRunList(Model):
    openapi_name: ClassVar[str] = "ScheduleRunList"
    items: list[ScheduleRun]
    next_cursor: str | None


class Health(Model):
    openapi_name: ClassVar[str] = "Health"
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


class Queue(Model):
    openapi_name: ClassVar[str] = "QueueOut"
    name: str
    ready: int
    deferred: int
    running: int
    oldest_ready_age_s: float | None
    completed: dict[str, Any]
    failed: dict[str, Any]
    throughput_per_s: float
    workers: int
    in_redis: int
    paused: bool = False


class BulkRetry(Model):
    """What `retry_failed` queued again."""

    openapi_name: ClassVar[str] = "BulkRetryOut"
    retried: int
    job_ids: list[uuid.UUID]
    more: bool


class QueueControl(Model):
    """A queue's pause flag, as `pause_queue` / `resume_queue` left it."""

    openapi_name: ClassVar[str] = "QueueControl"
    name: str
    paused: bool


class UsageDay(Model):
    """One UTC day's usage of one job kind (GET /v1/usage)."""

    openapi_name: ClassVar[str] = "UsageDay"
    day: date
    kind: str
    jobs: int
    succeeded: int
    failed: int
    pages: int
    bytes_fetched: int
    browser_seconds: float


class UsageTotals(Model):
    openapi_name: ClassVar[str] = "UsageTotals"
    jobs: int
    succeeded: int
    failed: int
    pages: int
    bytes_fetched: int
    browser_seconds: float


class Usage(Model):
    """Your usage from `start` to `end` (UTC days, both included), by day then kind."""

    openapi_name: ClassVar[str] = "UsageOut"
    start: date
    end: date
    days: list[UsageDay]
    totals: UsageTotals


class QueueStatus(Model):
    openapi_name: ClassVar[str] = "QueueStatus"
    queues: list[Queue]
    at: datetime


class Worker(Model):
    openapi_name: ClassVar[str] = "WorkerOut"
    id: str
    host: str
    pid: int
    queue: str
    concurrency: int
    jobs_running: int
    jobs_done: int
    jobs_failed: int
    started_at: datetime
    last_heartbeat: datetime
    version: str
    metrics_port: int | None


class WorkerList(Model):
    openapi_name: ClassVar[str] = "WorkerList"
    workers: list[Worker]


class Artifact(BaseModel):
    """A file a job produced (a render's screenshot): its bytes and content type."""

    content: bytes
    content_type: str


class Event(BaseModel):
    """One job event from the Server-Sent Events streams; `id` is where to resume from
    (None for a replayed final state that has no stream position)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    type: str
    job_id: uuid.UUID
    kind: str
    status: str
    queue: str | None = None
    attempt: int | None = None
    at: float | None = None
    reason: str | None = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    run_after: float | None = None

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled: the job's last event."""
        return self.type in TERMINAL_STATUSES


ANSWER_MODELS: tuple[type[Model], ...] = (
    JobError,
    JobWarning,
    Job,
    JobList,
    Page,
    PageList,
    Batch,
    Attempt,
    AttemptList,
    Delivery,
    DeliveryList,
    Agent,
    AgentCreated,
    AgentList,
    Session,
    SessionList,
    WebhookSecret,
    Schedule,
    ScheduleList,
    ScheduleRun,
    ScheduleRunList,
    Health,
    Queue,
    BulkRetry,
    QueueControl,
    QueueStatus,
    Worker,
    WorkerList,
    UsageDay,
    UsageTotals,
    Usage,
)

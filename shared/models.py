"""SQLAlchemy models: owner, api_key, agent, job, job_count, job_attempt, artifact,
webhook_delivery, schedule, schedule_run, crawl, crawl_page, result_cache."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.ids import new_id

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TZDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite, stored as UTC and read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    LOST = "lost"
    DEFERRED = "deferred"


class Owner(Base):
    __tablename__ = "owner"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)


class Agent(Base):
    __tablename__ = "agent"
    __table_args__ = (
        Index(
            "uq_agent_owner_id_name_live",
            "owner_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    headers: Mapped[dict[str, str]] = mapped_column(JsonType, default=dict)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    backoff_base_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    backoff_max_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    host_rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    host_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Jobs of this agent running at once, across all workers (None: no limit).
    max_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    obey_robots: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    allowed_domains: Mapped[list[str]] = mapped_column(JsonType, default=list)
    blocked_domains: Mapped[list[str]] = mapped_column(JsonType, default=list)
    secrets_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    secret_names: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # Terminal states of this agent's jobs are POSTed here, signed with the agent's secret.
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    webhook_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Render contexts: playwright-stealth and a coherent fingerprint; the jobs' default
    # locale (Accept-Language, the browser's) and time zone (worker/identity.py).
    stealth: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    locale: Mapped[str | None] = mapped_column(String(35), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Outbound proxies (shared/proxies.py): [{"url", "auth_secret"?}] and how one is chosen.
    proxies: Mapped[list[dict[str, str]]] = mapped_column(
        JsonType, default=list, server_default=text("'[]'")
    )
    proxy_rotation: Mapped[str] = mapped_column(
        String(20), default="round_robin", server_default="round_robin"
    )
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)


def _only_set(column: str) -> dict[str, Any]:
    """A partial index's predicate: the rows where `column` is set."""
    where = text(f"{column} IS NOT NULL")
    return {"postgresql_where": where, "sqlite_where": where}


JOB_FILLFACTOR = 70


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_owner_created", "owner_id", "created_at", "id"),
        # `GET /v1/jobs?kind=` and `?agent_id=` read only matching jobs, however few there are.
        Index("ix_job_owner_kind_created", "owner_id", "kind", "created_at", "id"),
        Index("ix_job_agent_created", "agent_id", "created_at", "id"),
        Index("ix_job_status_run_after", "status", "run_after"),
        # The next three hold only the rows they are for: every write of a job row skips them.
        # The queue's completed/failed counts over the last hour.
        Index("ix_job_finished_at", "finished_at", **_only_set("finished_at")),
        Index(
            "ix_job_owner_idempotency",
            "owner_id",
            "idempotency_key",
            unique=True,
            **_only_set("idempotency_key"),
        ),
        # A schedule fires at most one job per instant (the second guard after schedule_run).
        Index(
            "ix_job_schedule_instant",
            "schedule_id",
            "schedule_instant",
            unique=True,
            **_only_set("schedule_id"),
        ),
        # The overlap check reads only the few live jobs of a schedule.
        Index(
            "ix_job_schedule_active",
            "schedule_id",
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
        # A crawl's pages (`GET /v1/jobs?parent_id=`, cancelling a crawl).
        Index("ix_job_parent_created", "parent_id", "created_at", "id", **_only_set("parent_id")),
        # Room on each page for the row's next versions (claimed, then its outcome and result):
        # a job's life then stays on the page it was inserted on, instead of each update
        # moving the row to another page (cold, in a big ledger; migration 0014).
        {"postgresql_with": {"fillfactor": JOB_FILLFACTOR}},
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id"))
    kind: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    input: Mapped[dict[str, Any]] = mapped_column(JsonType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_s: Mapped[float] = mapped_column(Float)
    # Incremented by every claim; outcome writes must quote it (attempt fencing).
    fence: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    run_after: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    # The bytes its attempts read (page bodies, rendered HTML, API answers): GET /v1/usage.
    bytes_fetched: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # 0-9, higher first among a queue's due jobs (its arq score: shared/queue.py).
    priority: Mapped[int] = mapped_column(SmallInteger, default=5, server_default="5")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    # Set on jobs a schedule fired: which schedule, for which instant (a foreign key on
    # PostgreSQL only, see migration 0002).
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("schedule.id", ondelete="SET NULL"), nullable=True
    )
    schedule_instant: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # A crawl's page jobs name their crawl (no foreign key: each row is kept and deleted on
    # its own terms).
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class JobCount(Base):
    """Signed deltas of the job table's counts by (queue, kind, status), written by triggers on
    `job` (PostgreSQL only, migration 0010_ledger) and folded by the reconciler: their sums
    are the counts (shared/repositories/job_counts.py)."""

    __tablename__ = "job_count"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    queue: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(BigInteger)


class JobAttempt(Base):
    __tablename__ = "job_attempt"
    __table_args__ = (Index("ix_job_attempt_job_fence", "job_id", "fence", unique=True),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    fence: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default=AttemptOutcome.RUNNING)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)


class Artifact(Base):
    """A file a job produced (a screenshot), kept in the database so any API host serves it."""

    __tablename__ = "artifact"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not yet delivered; `next_attempt_at` says when it is tried again
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # retries ran out (a day), or the receiver can never be reached
    BLOCKED = "blocked"  # the egress policy refused the URL: it was never called


class WebhookDelivery(Base):
    """One webhook event for one URL (the job's or its agent's), and how delivering it went.
    Written in the transaction that ends the job, so no terminal state goes unannounced."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_job_id_created_at", "job_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, default=new_id)
    event: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # "job" or "agent": whose webhook_url
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)


class ScheduleOverlap(StrEnum):
    SKIP = "skip"  # an instant is not started while the previous run is queued or running
    ALLOW = "allow"


class ScheduleMisfire(StrEnum):
    SKIP = "skip"  # instants missed while no worker ran are counted, not run
    RUN_ONCE = "run_once"  # one catch-up run for the latest missed instant


class ScheduleRunStatus(StrEnum):
    FIRED = "fired"
    SKIPPED = "skipped"


class ScheduleTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


class Schedule(Base):
    """A cron expression in a timezone and the job it fires; `next_fire_at` is the next
    instant not yet fired (the scheduler's cursor)."""

    __tablename__ = "schedule"
    __table_args__ = (
        Index("ix_schedule_owner_created", "owner_id", "created_at", "id"),
        Index("ix_schedule_enabled_next_fire_at", "enabled", "next_fire_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    # A job spec: kind, input, agent_id?, max_attempts?, timeout_s? (validated again on firing).
    job: Mapped[dict[str, Any]] = mapped_column(JsonType)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    overlap: Mapped[str] = mapped_column(String(16), default=ScheduleOverlap.ALLOW)
    misfire: Mapped[str] = mapped_column(String(16), default=ScheduleMisfire.SKIP)
    next_fire_at: Mapped[datetime] = mapped_column(TZDateTime())
    missed_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)


class ScheduleRun(Base):
    """One instant of a schedule, fired or skipped; unique per (schedule, instant), which is
    what makes firing exactly-once across workers."""

    __tablename__ = "schedule_run"
    __table_args__ = (UniqueConstraint("schedule_id", "instant"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"))
    instant: Mapped[datetime] = mapped_column(TZDateTime())
    trigger: Mapped[str] = mapped_column(String(16), default=ScheduleTrigger.SCHEDULE)
    status: Mapped[str] = mapped_column(String(16))
    skipped_because: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class PageState(StrEnum):
    """Where a URL of a crawl's frontier is. `queued` means a page job exists and has not
    ended (the job's own status says whether it runs)."""

    PENDING = "pending"
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    """Why a URL of a crawl's frontier was not crawled."""

    ROBOTS = "robots"
    FILTERED = "filtered"
    DEPTH = "depth"
    LIMIT = "limit"
    DUPLICATE = "duplicate"
    BLOCKED = "blocked"
    EXTERNAL = "external"


class Crawl(Base):
    """A crawl job's frontier header: how many pages it has taken (against its `limit`).
    Its row is the lock that serializes the crawl's refills."""

    __tablename__ = "crawl"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    taken: Mapped[int] = mapped_column(Integer, default=0)
    refills: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class CrawlPage(Base):
    """One normalized URL of a crawl: its depth, the page that found it, its state, and the
    page job that fetched it (or why it was not crawled)."""

    __tablename__ = "crawl_page"
    __table_args__ = (
        UniqueConstraint("crawl_id", "url_key"),
        Index("ix_crawl_page_crawl_id_state_depth_id", "crawl_id", "state", "depth", "id"),
        Index("ix_crawl_page_crawl_id_id", "crawl_id", "id"),
        Index("ix_crawl_page_job_id", "job_id", **_only_set("job_id")),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    crawl_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    url_key: Mapped[str] = mapped_column(String(64))  # sha256 of the normalized URL
    url: Mapped[str] = mapped_column(Text)
    depth: Mapped[int] = mapped_column(Integer)
    found_on: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=PageState.PENDING)
    skipped_because: Mapped[str | None] = mapped_column(String(16), nullable=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class ResultCache(Base):
    """A page's result kept for `max_age_s` (shared/result_cache.py): one row per owner and
    key (the normalized URL and the output options), the newest result."""

    __tablename__ = "result_cache"
    __table_args__ = (Index("ix_result_cache_owner_id_cache_key", "owner_id", "cache_key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    cache_key: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(JsonType)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)  # where it came from
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)


class AgentSession(Base):
    """A job `session`: the cookies and browser storage an agent keeps under a name, sealed
    (shared/crypto.py) as Playwright's storage state. `version` counts writes: a write names
    the version it read, so a job whose session lock lapsed cannot overwrite a newer state."""

    __tablename__ = "agent_session"
    __table_args__ = (UniqueConstraint("agent_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"))
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    state_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)

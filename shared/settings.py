"""One Settings object for every process, read from OUTRIDER_* environment variables."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REDIS_URL_FILE = "redis.url"
SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class NoRedisConfigured(RuntimeError):
    """Neither OUTRIDER_REDIS_URL nor a running `outrider dev` says where Redis is."""


class Settings(BaseSettings):
    """Every knob of Outrider; docs/settings.md is generated from these fields
    (`python -m shared.settings_doc`)."""

    model_config = SettingsConfigDict(env_prefix="OUTRIDER_", extra="ignore")

    data_dir: Path = Field(
        Path(".outrider"),
        description="Where the SQLite file, the embedded Redis, the dev key and a generated "
        "secret key live.",
    )
    database_url: str | None = Field(
        None,
        description="e.g. `postgresql+asyncpg://user:pw@host/db`; unset: a SQLite file in the "
        "data dir.",
    )
    database_pgbouncer: bool = Field(
        False,
        description="Set when `DATABASE_URL` leads to PgBouncer in transaction pooling mode: "
        "asyncpg then keeps no prepared statements across transactions (see "
        "docs/operations.md, PgBouncer). Migrations may run through it too.",
    )
    redis_url: str | None = Field(
        None,
        description="e.g. `redis://host:6379/0`; unset: the one `outrider dev` started "
        "(recorded in the data dir).",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Encrypts agent secrets at rest: set it in production and keep it. Unset: "
        "generated into `DATA_DIR/secret.key`.",
    )

    log_format: Literal["console", "json"] = Field("console", description="`console` or `json`.")
    log_level: str = Field("INFO", description="The lowest level logged.")

    api_host: str = Field("127.0.0.1", description="Where `outrider api` and `dev` listen.")
    api_port: int = Field(8000, description="The port `outrider api` and `dev` listen on.")
    max_request_bytes: int = Field(
        2 * 1024 * 1024, description="A larger request body gets 413 before it is parsed."
    )
    auth_cache_s: float = Field(
        5.0,
        ge=0,
        description="An API process remembers a valid key this long (a revoked key stops "
        "working within it; 0: ask the database on every request).",
    )
    db_pool_size: int = Field(
        20,
        description="PostgreSQL connections pooled per process (a worker also keeps up to 10 "
        "plain asyncpg connections for its job store, an API process up to 2).",
    )
    db_max_overflow: int = Field(10, description="Connections beyond the pool, when busy.")
    db_pool_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long a request waits for a pooled connection before it is answered "
        "503 with `Retry-After` (a worker defers its job instead): a stall, not a queue.",
    )

    worker_concurrency: int = Field(50, description="Jobs at once per worker process.")
    worker_shutdown_grace_s: float = Field(
        20.0, description="How long SIGTERM waits for running jobs before it interrupts them."
    )
    worker_poll_delay_s: float = Field(
        0.01,
        description="Idle poll interval of the queue (dispatch latency against idle Redis "
        "traffic).",
    )
    worker_heartbeat_s: float = Field(2.0, description="Lease renewal and liveness interval.")
    worker_lease_s: float = Field(
        10.0,
        description="A running job whose lease is this old (and whose worker is gone) is requeued.",
    )
    reconcile_interval_s: float = Field(2.0, description="How often the reconciler runs.")
    enqueue_grace_s: float = Field(
        10.0, description="A queued job due for this long is enqueued again (a lost enqueue)."
    )
    worker_http_max_owners: int = Field(
        64,
        ge=1,
        description="Owners whose connection pools a worker process keeps (one pool per owner, "
        "never shared; an owner's agents' proxies each count as one more).",
    )
    worker_http_idle_s: float = Field(
        60.0, gt=0, description="An owner's connection pool unused this long is closed."
    )

    job_default_timeout_s: float = Field(
        30.0, description="Per-attempt timeout when neither the job nor its agent sets one."
    )
    job_max_timeout_s: float = Field(600.0, description="The largest timeout a job may ask for.")
    priority_aging_s: float = Field(
        60.0,
        gt=0,
        description="How long a waiting job takes to get ahead of any newer job, whatever "
        "their priorities: a priority-0 job waits at most this long behind priority-9 ones.",
    )
    job_default_max_attempts: int = Field(
        3, description="Attempts when neither the job nor its agent sets them."
    )
    job_max_attempts_limit: int = Field(20, description="The cap on `max_attempts`.")
    job_input_max_bytes: int = Field(
        256 * 1024, description="The largest job input (UTF-8 bytes of its compact JSON)."
    )
    result_max_bytes: int = Field(
        1024 * 1024,
        description="`http` response bodies are cut here (`body_truncated`); a render's HTML too.",
    )
    crawl_max_pages: int = Field(
        100_000, ge=1, description="The largest `limit` a crawl may ask for (pages)."
    )
    crawl_max_in_flight: int = Field(
        100,
        ge=1,
        description="Pages of one crawl queued or running at once; it refills as they end.",
    )
    crawl_sitemap_max_files: int = Field(
        50, ge=1, description="Sitemap files (indexes included) one crawl or map reads at most."
    )
    crawl_sitemap_max_urls: int = Field(
        50_000, ge=1, description="URLs one crawl or map takes from sitemaps at most."
    )
    crawl_sitemap_max_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1024,
        description="A sitemap larger than this (decompressed) is read up to here and no further.",
    )
    fetch_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="A page larger than this (decompressed) fails `response_too_large`.",
    )
    document_max_pages: int = Field(
        500, ge=1, description="A PDF with more pages than this fails `document_too_large`."
    )
    llm_base_url: str | None = Field(
        None,
        description="An OpenAI-compatible API (OpenAI, vLLM, llama.cpp's server, Ollama), e.g. "
        "`http://127.0.0.1:11434/v1`: `json` formats POST to `<base>/chat/completions`. "
        "Unset: a `json` format is refused at submit (`llm_not_configured`).",
    )
    llm_model: str | None = Field(None, description="The model named in chat-completion calls.")
    llm_key_secret: str = Field(
        "llm_api_key",
        description="The name of the agent secret sent as the LLM's `Authorization: Bearer` key "
        "(a job whose agent has no such secret calls without a key).",
    )
    llm_max_input_chars: int = Field(
        100_000, ge=1000, description="The page's Markdown is cut here before it goes to the LLM."
    )
    llm_timeout_s: float = Field(120.0, gt=0, description="One chat-completion call's timeout.")
    batch_max_jobs: int = Field(1000, description="The largest batch.")
    backoff_base_s: float = Field(
        1.0, description="Retry backoff: the first wait (doubling per attempt, with jitter)."
    )
    backoff_max_s: float = Field(300.0, description="Retry backoff: the longest wait.")

    schedule_max_per_owner: int = Field(
        100, ge=0, description="Live schedules per owner (422 `schedule_limit_reached`)."
    )
    schedule_min_interval_s: float = Field(
        60.0,
        ge=0,
        description="The shortest gap between two fire times of a schedule (422 "
        "`schedule_interval_too_short`).",
    )
    schedule_poll_interval_s: float = Field(
        1.0, gt=0, description="The longest sleep of a worker's scheduler loop."
    )
    schedule_misfire_grace_s: float = Field(
        10.0,
        ge=0,
        description="An instant later than this was missed (no worker ran): the schedule's "
        "`misfire` policy applies.",
    )

    host_rate_per_s: float = Field(
        2.0,
        ge=0,
        description="Requests per second per host, shared by every worker, unless the agent "
        "sets its own (0: no limit).",
    )
    host_burst: int = Field(
        1, ge=1, description="Requests a quiet host may take at once (1: strictly paced)."
    )
    host_concurrency: int = Field(
        4,
        ge=0,
        description="Requests in flight per host, unless the agent sets its own (0: no limit).",
    )
    host_wait_max_s: float = Field(
        1.0,
        ge=0,
        description="A host slot this close is waited for in the worker; a farther one defers "
        "the job.",
    )
    host_lease_s: float = Field(
        30.0, gt=0, description="A host slot held by a dead worker frees itself after this."
    )
    host_backoff_max_s: float = Field(
        300.0, ge=0, description="The cap on how long a 429/503 `Retry-After` holds a host back."
    )
    session_lock_s: float = Field(
        30.0,
        gt=0,
        description="A job `session`'s lock, renewed while its job runs: a dead worker's frees "
        "itself after this.",
    )
    session_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="The largest session state (cookies and browser storage, as JSON) a job "
        "may write back; a larger one fails the job `session_too_large`.",
    )
    robots_cache_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="How long a fetched robots.txt is used before it is fetched again.",
    )
    robots_timeout_s: float = Field(10.0, gt=0, description="The timeout of a robots.txt fetch.")
    proxy_bench_s: float = Field(
        60.0,
        gt=0,
        description="A proxy that fails (unreachable, 407, a 5xx to CONNECT for a target another "
        "proxy reaches) is not used by any worker for this long; jobs move on to the agent's "
        "other proxies.",
    )
    proxy_ca_file: Path | None = Field(
        None,
        description="A PEM file of CA certificates that the certificates of `https://` proxies "
        "may chain to (a private CA), besides the system's. Read by the workers.",
    )

    events_retention_s: float = Field(
        900.0,
        ge=600,
        description="How long job events stay replayable (`Last-Event-ID`); at least 600.",
    )
    sse_max_streams: int = Field(
        200, ge=1, description="Event streams one API process serves at once."
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="A comment line is sent on an idle event stream this often."
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="How long one webhook delivery may take."
    )
    webhook_max_age_s: float = Field(
        86400.0, gt=0, description="A delivery is retried for this long, then `failed`."
    )
    webhook_backoff_base_s: float = Field(
        2.0, gt=0, description="Webhook delivery retry n waits base * 3^(n-1), ±10%."
    )
    webhook_backoff_max_s: float = Field(
        3600.0, gt=0, description="The longest wait between webhook delivery retries."
    )
    owner_max_queued: int | None = Field(
        None,
        ge=1,
        description="Jobs an owner may have queued at once; a submission past it is refused "
        "429 `quota_exceeded` with `Retry-After` (a crawl's pages are not counted). Unset: "
        "no limit.",
    )
    owner_max_jobs_per_day: int | None = Field(
        None,
        ge=1,
        description="Jobs an owner may submit per UTC day (each job of a batch counts); past "
        "it, 429 `quota_exceeded` with `Retry-After` until midnight UTC. Unset: no limit.",
    )
    job_retention_s: float | None = Field(
        None,
        ge=3600,
        description="Jobs that ended this long ago are deleted, with their attempts, artifacts "
        "and deliveries; at least 3600. Unset: every job is kept.",
    )
    retention_interval_s: float = Field(
        300.0, gt=0, description="How often each worker looks for expired jobs (±25%)."
    )
    worker_metrics_port: int | None = Field(
        9464,
        ge=-1,
        le=65535,
        description="Where a worker serves its Prometheus metrics (0: a free port; -1 or "
        "empty: off).",
    )
    worker_metrics_host: str = Field(
        "127.0.0.1",
        description="The address a worker's metrics listen on (`0.0.0.0` for a scraper on "
        "another host).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="If set, the API's `/metrics` needs `Authorization: Bearer <token>`. "
        "Unset: open (scrapers usually sit on a private network).",
    )

    egress_allow_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated private ranges jobs may reach (`make run`: loopback).",
    )
    admin_owners: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated owner names whose keys may pause and resume queues "
        "(queues are shared by every owner); `outrider dev`: its own `dev` owner.",
    )
    egress_allowed_ports: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["80", "443", "8080", "8443"],
        description="Ports and ranges (`8000-9000`) allowed for public destinations.",
    )

    chromium_path: str = Field(
        "/usr/bin/chromium",
        description="The browser of browser workers (`make install` installs Debian's as root).",
    )
    browser_max_pages: int = Field(
        4, ge=1, description="Pages at once per browser worker (caps `--concurrency`)."
    )
    browser_recycle_pages: int = Field(
        200, ge=1, description="A browser is replaced after this many pages."
    )
    browser_max_rss_mb: int = Field(
        1536,
        ge=64,
        description="A browser's memory limit, held while pages run: over it, its largest pages "
        "are stopped (`page_too_large`), or it is replaced once its jobs end.",
    )
    browser_page_max_mb: int = Field(
        1024,
        ge=32,
        description="A page whose renderer uses more memory than this is stopped "
        "(`page_too_large`).",
    )
    browser_launch_timeout_s: float = Field(
        30.0, gt=0, description="How long Chromium may take to start."
    )
    artifact_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="The largest stored artifact (a screenshot)."
    )

    @field_validator(
        "worker_metrics_port",
        "metrics_token",
        "job_retention_s",
        "owner_max_queued",
        "owner_max_jobs_per_day",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("egress_allow_cidrs", "egress_allowed_ports", "admin_owners", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'outrider.db').resolve()}"

    @property
    def resolved_redis_url(self) -> str:
        """The Redis URL: the setting, else the one `outrider dev` wrote to the data dir."""
        if self.redis_url:
            return self.redis_url
        marker = self.data_dir / REDIS_URL_FILE
        if marker.is_file():
            return marker.read_text().strip()
        raise NoRedisConfigured(
            "No Redis configured: set OUTRIDER_REDIS_URL (e.g. redis://127.0.0.1:6379/0), "
            "or start `outrider dev` (make run), which embeds one and records its URL in "
            f"{marker}."
        )

    def resolved_secret_key(self) -> str:
        """The key agent secrets are encrypted with; in development, a generated file."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / SECRET_KEY_FILE
        if not path.is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{SECRET_KEY_FILE}.{os.getpid()}")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # atomic: the first process to get here wins
            tmp.unlink()
        return path.read_text().strip()

    @property
    def worker_metrics_enabled(self) -> bool:
        """Whether workers serve /metrics (a port of 0 asks the OS for a free one)."""
        return self.worker_metrics_port is not None and self.worker_metrics_port >= 0

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()

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


class Settings(BaseSettings):
    """Every knob of Outrider. The README lists each one with its default."""

    model_config = SettingsConfigDict(env_prefix="OUTRIDER_", extra="ignore")

    data_dir: Path = Path(".outrider")
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: SecretStr | None = None

    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_request_bytes: int = 2 * 1024 * 1024
    auth_cache_s: float = Field(default=5.0, ge=0)
    db_pool_size: int = 20
    db_max_overflow: int = 10
    # How long a request waits for a pooled connection before it is answered 503 (and a
    # worker defers its job): a stall, not a queue.
    db_pool_timeout_s: float = Field(default=10.0, gt=0)

    worker_concurrency: int = 50
    worker_shutdown_grace_s: float = 20.0
    worker_poll_delay_s: float = 0.01
    worker_heartbeat_s: float = 2.0
    worker_lease_s: float = 10.0
    reconcile_interval_s: float = 2.0
    enqueue_grace_s: float = 10.0
    # Outbound HTTP (worker/http_client.py): one connection pool per owner, never shared.
    worker_http_max_owners: int = Field(default=64, ge=1)
    worker_http_idle_s: float = Field(default=60.0, gt=0)

    job_default_timeout_s: float = 30.0
    job_max_timeout_s: float = 600.0
    job_default_max_attempts: int = 3
    job_max_attempts_limit: int = 20
    job_input_max_bytes: int = 256 * 1024
    result_max_bytes: int = 1024 * 1024
    fetch_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    batch_max_jobs: int = 1000
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0

    # Schedules (shared/cron.py, worker/scheduler.py).
    schedule_max_per_owner: int = Field(default=100, ge=0)
    schedule_min_interval_s: float = Field(default=60.0, ge=0)
    schedule_poll_interval_s: float = Field(default=1.0, gt=0)
    schedule_misfire_grace_s: float = Field(default=10.0, ge=0)

    # Politeness per host, shared by all workers (worker/host_gate.py). 0 = no limit.
    host_rate_per_s: float = Field(default=2.0, ge=0)
    host_burst: int = Field(default=1, ge=1)
    host_concurrency: int = Field(default=4, ge=0)
    host_wait_max_s: float = Field(default=1.0, ge=0)
    host_lease_s: float = Field(default=30.0, gt=0)
    host_backoff_max_s: float = Field(default=300.0, ge=0)
    robots_cache_ttl_s: float = Field(default=86400.0, gt=0)
    robots_timeout_s: float = Field(default=10.0, gt=0)

    # Observability: job events (SSE, shared/events.py), webhooks, metrics.
    events_retention_s: float = Field(default=900.0, ge=600)
    sse_max_streams: int = Field(default=200, ge=1)
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_age_s: float = Field(default=86400.0, gt=0)
    webhook_backoff_base_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    # Retention (worker/retention.py): unset = jobs are kept forever.
    job_retention_s: float | None = Field(default=None, ge=3600)
    retention_interval_s: float = Field(default=300.0, gt=0)
    # Worker /metrics (worker/metrics.py): 0 = a free port the OS picks; empty or -1 = off.
    worker_metrics_port: int | None = Field(default=9464, ge=-1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # API /metrics: unset = open (scrapers usually sit on a private network).
    metrics_token: SecretStr | None = None

    egress_allow_cidrs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    egress_allowed_ports: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["80", "443", "8080", "8443"]
    )

    # Browser workers (`render` jobs): Debian's Chromium, driven by Playwright.
    chromium_path: str = "/usr/bin/chromium"
    browser_max_pages: int = Field(default=4, ge=1)
    browser_recycle_pages: int = Field(default=200, ge=1)
    browser_max_rss_mb: int = Field(default=1536, ge=64)
    browser_launch_timeout_s: float = Field(default=30.0, gt=0)
    artifact_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    @field_validator("worker_metrics_port", "metrics_token", "job_retention_s", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("egress_allow_cidrs", "egress_allowed_ports", mode="before")
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
        raise RuntimeError(
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

"""Response models of the queue and worker views (GET /v1/queue, GET /v1/workers)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.services.status import THROUGHPUT_WINDOW_S


class QueueOut(BaseModel):
    """One queue, as the job table and Redis see it now."""

    name: str
    ready: int = Field(description="Queued jobs that are due now.")
    deferred: int = Field(description="Queued jobs waiting for their time (backoff, politeness).")
    running: int = Field(description="Jobs a worker is running.")
    oldest_ready_age_s: float | None = Field(
        description="How long the oldest due job has been waiting; null if none is."
    )
    completed: dict[str, int] = Field(
        description="Jobs that succeeded in the last minute, 5 and 60 minutes (`1m`, `5m`, `60m`)."
    )
    failed: dict[str, int] = Field(
        description="Jobs that failed for good in the last `1m`, `5m` and `60m`."
    )
    throughput_per_s: float = Field(
        description=f"Jobs finished (succeeded or failed) per second over the last "
        f"{THROUGHPUT_WINDOW_S} s."
    )
    workers: int = Field(description="Live worker processes serving this queue.")
    in_redis: int = Field(description="Job ids the Redis queue holds (ready, deferred, running).")
    paused: bool = Field(
        default=False, description="Paused (POST /v1/queues/{name}/pause): workers take none."
    )


class QueueStatus(BaseModel):
    queues: list[QueueOut]
    at: datetime


class WorkerOut(BaseModel):
    """A live worker process, from its heartbeat."""

    id: str
    host: str
    pid: int
    queue: str
    concurrency: int
    jobs_running: int
    jobs_done: int = Field(description="Jobs this process finished as succeeded since it started.")
    jobs_failed: int = Field(description="Jobs this process finished as failed since it started.")
    started_at: datetime
    last_heartbeat: datetime
    version: str
    metrics_port: int | None = Field(description="Where this worker serves /metrics, if it does.")


class WorkerList(BaseModel):
    workers: list[WorkerOut]

"""The queue and worker views: shared/services/status.py's numbers as API responses."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from api.deps import AppState
from api.schemas.status import QueueOut, QueueStatus, WorkerOut
from shared.liveness import live_workers
from shared.models import utcnow
from shared.services.status import queue_snapshots


async def queue_status(state: AppState) -> QueueStatus:
    """Every queue's depth, age, recent outcomes and throughput, now."""
    now = utcnow()
    async with state.sessionmaker() as session:
        snapshots = await queue_snapshots(session, state.redis, now)
    return QueueStatus(queues=[QueueOut(**asdict(s)) for s in snapshots], at=now)


def worker_out(info: dict[str, Any]) -> WorkerOut:
    """A worker's heartbeat payload as the API shows it."""
    return WorkerOut(
        id=info["worker_id"],
        host=info.get("host") or info["worker_id"].rsplit(":", 2)[0],
        pid=int(info.get("pid") or info["worker_id"].rsplit(":", 2)[1]),
        queue=info["queue"],
        concurrency=info["concurrency"],
        jobs_running=info.get("running", 0),
        jobs_done=info.get("done", 0),
        jobs_failed=info.get("failed", 0),
        started_at=datetime.fromisoformat(info["started_at"]),
        last_heartbeat=datetime.fromisoformat(info["heartbeat_at"]),
        version=info.get("version", "unknown"),
        metrics_port=info.get("metrics_port"),
    )


async def worker_status(state: AppState) -> list[WorkerOut]:
    """The live workers, oldest first."""
    return [worker_out(info) for info in await live_workers(state.redis)]

"""Queue and worker state: what is waiting, what runs, who runs it."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.status import QueueStatus, WorkerList
from api.services.status import queue_status, worker_status

router = APIRouter(prefix="/v1", tags=["status"])


@router.get("/queue", response_model=QueueStatus, responses=error_responses(401, 503))
async def get_queue(state: StateDep, principal: PrincipalDep) -> QueueStatus:
    """Per queue: ready, deferred and running jobs, the oldest ready job's wait, jobs that
    succeeded or failed in the last 1/5/60 minutes, throughput and live workers. The numbers
    are the whole installation's (queues are shared), not only the caller's jobs."""
    return await queue_status(state)


@router.get("/workers", response_model=WorkerList, responses=error_responses(401, 503))
async def get_workers(state: StateDep, principal: PrincipalDep) -> WorkerList:
    """Every live worker process. A worker that stops heartbeating is gone within three
    heartbeats (6 s by default); one that shuts down gracefully removes itself at once."""
    return WorkerList(workers=await worker_status(state))

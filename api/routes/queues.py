"""Queue control: pause and resume a queue (operators: OUTRIDER_ADMIN_OWNERS)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Principal, PrincipalDep, StateDep
from api.errors import error_responses
from shared.errors import Forbidden
from shared.queue import set_paused

router = APIRouter(prefix="/v1/queues", tags=["status"])

QueueName = Literal["default", "browser"]


class QueueControl(BaseModel):
    name: str
    paused: bool = Field(description="While true, workers take none of this queue's jobs.")


def _check_admin(state: StateDep, principal: Principal) -> None:
    if principal.owner_name not in state.settings.admin_owners:
        raise Forbidden(
            "Queues are shared by every owner: only the owners in OUTRIDER_ADMIN_OWNERS may "
            "pause or resume them."
        )


@router.post("/{name}/pause", response_model=QueueControl, responses=error_responses(403, 422))
async def pause_queue(name: QueueName, state: StateDep, principal: PrincipalDep) -> QueueControl:
    """Stop workers taking this queue's jobs; running jobs finish, submissions still queue
    (and wait). The pause holds across restarts until `resume`."""
    _check_admin(state, principal)
    await set_paused(state.redis, name, True)
    return QueueControl(name=name, paused=True)


@router.post("/{name}/resume", response_model=QueueControl, responses=error_responses(403, 422))
async def resume_queue(name: QueueName, state: StateDep, principal: PrincipalDep) -> QueueControl:
    """Let workers take this queue's jobs again."""
    _check_admin(state, principal)
    await set_paused(state.redis, name, False)
    return QueueControl(name=name, paused=False)

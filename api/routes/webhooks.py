"""Webhooks: a job's deliveries, and rotating an agent's signing secret."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.agents import WebhookSecretOut
from api.schemas.jobs import DeliveryList, DeliveryOut
from shared.repositories import agent as agents
from shared.repositories import job as jobs
from shared.repositories import webhooks

router = APIRouter(tags=["webhooks"])


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    response_model=DeliveryList,
    responses=error_responses(404, 422),
)
async def list_deliveries(
    job_id: uuid.UUID, state: StateDep, principal: PrincipalDep
) -> DeliveryList:
    """Every webhook delivery of the job (one per event and URL), oldest first, with how its
    attempts went."""
    async with state.sessionmaker() as session:
        job = await jobs.get_job(session, principal.owner_id, job_id)
        rows = await webhooks.list_deliveries(session, job.id)
    return DeliveryList(items=[DeliveryOut.model_validate(row) for row in rows])


@router.post(
    "/v1/agents/{agent_id}/webhook-secret",
    response_model=WebhookSecretOut,
    responses=error_responses(404, 422),
)
async def rotate_webhook_secret(
    agent_id: uuid.UUID, state: StateDep, principal: PrincipalDep
) -> WebhookSecretOut:
    """Give the agent a new webhook signing secret and return it, this once. The old secret
    stops working at once (retries of earlier deliveries are signed with the new one)."""
    async with state.sessionmaker.begin() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
        secret = await agents.set_webhook_secret(session, agent, state.box)
    return WebhookSecretOut(agent_id=agent_id, webhook_secret=secret)

"""Agents: a caller's named profiles (headers, timeouts, retry policy, limits, secrets)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from redis.exceptions import RedisError

from api.deps import AppState, PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.agents import AgentCreate, AgentCreated, AgentList, AgentOut, AgentUpdate
from api.schemas.pagination import Cursor
from shared.logging import get_logger
from shared.models import Agent
from shared.queue import set_agent_limit
from shared.repositories import agent as agents
from shared.services.job_rows import check_timeout, check_webhook_url

router = APIRouter(prefix="/v1/agents", tags=["agents"])
log = get_logger(__name__)


async def _publish_limit(state: AppState, agent: Agent) -> None:
    """Hand the agent's `max_concurrency` to the workers' take script (shared/queue.py). If
    Redis is down, the reconciler copies it from the database within seconds of its return."""
    try:
        await set_agent_limit(state.redis, agent.id, agent.max_concurrency)
    except (RedisError, OSError) as exc:
        log.warning("agent.limit_deferred", error=str(exc)[:200])


@router.post(
    "", status_code=201, response_model=AgentCreated, responses=error_responses(400, 409, 413, 422)
)
async def create_agent(body: AgentCreate, state: StateDep, principal: PrincipalDep) -> AgentCreated:
    """Create an agent. Secrets are encrypted at rest and never returned; a webhook secret the
    request left out is generated and returned this once."""
    if body.webhook_url is not None:
        check_webhook_url(state.policy, body.webhook_url)
    check_timeout(state.settings, body.timeout_s)
    profile = body.model_dump(exclude={"name", "secrets", "webhook_secret"}, exclude_none=True)
    generated = None if body.webhook_secret else agents.new_webhook_secret()
    async with state.sessionmaker.begin() as session:
        agent = await agents.create_agent(
            session,
            principal.owner_id,
            state.box,
            body.name,
            profile,
            body.secrets,
            webhook_secret=body.webhook_secret or generated,
        )
    await _publish_limit(state, agent)
    out = AgentOut.model_validate(agent)
    return AgentCreated(**out.model_dump(), webhook_secret=generated)


@router.get("", response_model=AgentList, responses=error_responses(400, 422))
async def list_agents(
    state: StateDep,
    principal: PrincipalDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AgentList:
    """The caller's agents, newest first."""
    async with state.sessionmaker() as session:
        rows, next_cursor = await agents.list_agents(session, principal.owner_id, cursor, limit)
    return AgentList(items=[AgentOut.model_validate(a) for a in rows], next_cursor=next_cursor)


@router.get("/{agent_id}", response_model=AgentOut, responses=error_responses(404, 422))
async def get_agent(agent_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> AgentOut:
    async with state.sessionmaker() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
    return AgentOut.model_validate(agent)


@router.patch(
    "/{agent_id}", response_model=AgentOut, responses=error_responses(400, 404, 409, 413, 422)
)
async def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, state: StateDep, principal: PrincipalDep
) -> AgentOut:
    """Change some fields. `null` clears a profile field; a secret set to `null` is removed."""
    changes = body.model_dump(exclude_unset=True, exclude={"secrets"})
    if changes.get("webhook_url") is not None:
        check_webhook_url(state.policy, changes["webhook_url"])
    check_timeout(state.settings, changes.get("timeout_s"))
    for list_field in ("allowed_domains", "blocked_domains"):
        if list_field in changes and changes[list_field] is None:
            changes[list_field] = []
    if "headers" in changes and changes["headers"] is None:
        changes["headers"] = {}
    if changes.get("name", "") is None:
        changes.pop("name")
    async with state.sessionmaker.begin() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
        agent = await agents.update_agent(session, agent, state.box, changes, body.secrets)
    if "max_concurrency" in changes:
        await _publish_limit(state, agent)
    return AgentOut.model_validate(agent)


@router.delete(
    "/{agent_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 409, 422),
)
async def delete_agent(agent_id: uuid.UUID, state: StateDep, principal: PrincipalDep) -> Response:
    """Delete an agent (not the default one). Jobs that used it keep running."""
    async with state.sessionmaker.begin() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
        await agents.delete_agent(session, agent)
    return Response(status_code=204)

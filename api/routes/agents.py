"""Agents: a caller's named profiles (headers, timeouts, retry policy, limits, secrets)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from redis.exceptions import RedisError

from api.deps import AppState, PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.agents import (
    AgentCreate,
    AgentCreated,
    AgentList,
    AgentOut,
    AgentUpdate,
    SessionList,
    SessionOut,
)
from api.schemas.pagination import Cursor
from shared.errors import NotFound, ValidationFailed
from shared.logging import describe, get_logger
from shared.models import Agent
from shared.proxies import check_proxies, normal_proxies
from shared.queue import set_agent_limit
from shared.repositories import agent as agents
from shared.repositories import sessions
from shared.services.job_rows import check_timeout, check_webhook_url
from shared.specs import INVALID_SESSION_NAME, SESSION_NAME_MAX, check_session_name

router = APIRouter(prefix="/v1/agents", tags=["agents"])
log = get_logger(__name__)


async def _publish_limit(state: AppState, agent: Agent) -> None:
    """Hand the agent's `max_concurrency` to the workers' take script (shared/queue.py). If
    Redis is down, the reconciler copies it from the database within seconds of its return."""
    try:
        await set_agent_limit(state.redis, agent.id, agent.max_concurrency)
    except (RedisError, OSError) as exc:
        log.warning("agent.limit_deferred", error=describe(exc))


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
    if "proxies" in profile:
        check_proxies(state.policy, profile["proxies"], body.secrets)
        profile["proxies"] = normal_proxies(profile["proxies"])
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
    if "proxies" in changes:
        changes["proxies"] = changes["proxies"] or []
        check_proxies(state.policy, changes["proxies"], None)  # its secrets: once updated
        changes["proxies"] = normal_proxies(changes["proxies"])
    if "proxy_rotation" in changes and changes["proxy_rotation"] is None:
        changes["proxy_rotation"] = "round_robin"
    async with state.sessionmaker.begin() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
        agent = await agents.update_agent(session, agent, state.box, changes, body.secrets)
        if "proxies" in changes or body.secrets:  # a secret a proxy names may not go
            check_proxies(state.policy, agent.proxies or [], agent.secret_names)
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


def _session_name(name: str) -> str:
    try:
        return check_session_name(name)
    except ValueError:  # pydantic's custom error is a ValueError
        raise ValidationFailed(
            f"A session name is 1 to {SESSION_NAME_MAX} letters, digits, `_`, `.` or `-`, "
            "starting with a letter or digit.",
            code=INVALID_SESSION_NAME,
        ) from None


@router.get("/{agent_id}/sessions", response_model=SessionList, responses=error_responses(404, 422))
async def list_sessions(
    agent_id: uuid.UUID, state: StateDep, principal: PrincipalDep
) -> SessionList:
    """The agent's sessions (names and times; their cookies are never shown)."""
    async with state.sessionmaker() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
        rows = await sessions.list_sessions(session, principal.owner_id, agent.id)
    return SessionList(items=[SessionOut.model_validate(row) for row in rows])


@router.delete(
    "/{agent_id}/sessions/{name}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 422),
)
async def delete_session(
    agent_id: uuid.UUID,
    name: Annotated[str, Path(description="The session's name.")],
    state: StateDep,
    principal: PrincipalDep,
) -> Response:
    """Forget a session: its cookies and browser storage. The next job with this `session`
    starts empty. A job of the session running now does not write its state back."""
    name = _session_name(name)
    async with state.sessionmaker.begin() as session:
        agent = await agents.get_agent(session, principal.owner_id, agent_id)
        if not await sessions.delete_session(session, principal.owner_id, agent.id, name):
            raise NotFound("Session not found.")
    return Response(status_code=204)

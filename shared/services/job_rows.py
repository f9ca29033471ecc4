"""Turning a job spec into a job row: resolve the agent, check the destination, apply limits.

Shared by the API (`POST /v1/jobs`) and the scheduler (jobs fired from a schedule's template).
Nothing here commits or inserts: the caller's transaction does (shared/repositories/job.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.domains import domain_allowed
from shared.egress import EgressPolicy
from shared.errors import AgentNotFound, EgressBlocked, InvalidUrl, NotFound, ValidationFailed
from shared.jsonsafe import json_text
from shared.models import Agent, utcnow
from shared.repositories.agent import get_agent, get_default_agent
from shared.settings import Settings
from shared.specs import AnyJobSpec, CrawlInput, FetchInput, MapInput, queue_for


def check_timeout(settings: Settings, timeout_s: float | None, details: Any = None) -> None:
    """A job's (or an agent's) timeout may not pass OUTRIDER_JOB_MAX_TIMEOUT_S: 422
    `timeout_too_long` (the API's OpenAPI document states the same maximum)."""
    if timeout_s is not None and timeout_s > settings.job_max_timeout_s:
        raise ValidationFailed(
            f"timeout_s may be at most {settings.job_max_timeout_s:g} s.",
            code="timeout_too_long",
            details=details,
        )


async def resolve_agent(
    session: AsyncSession,
    owner_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    cache: dict[Any, Agent] | None = None,
) -> Agent:
    """The named agent of this owner, or its default; 404 `agent_not_found` for a missing or
    foreign one. `cache` spares repeated look-ups across a batch."""
    cache = {} if cache is None else cache
    if agent_id not in cache:
        if agent_id is None:
            cache[None] = await get_default_agent(session, owner_id)
        else:
            try:
                cache[agent_id] = await get_agent(session, owner_id, agent_id)
            except NotFound as exc:
                raise AgentNotFound("No such agent.") from exc
    return cache[agent_id]


def check_destination(policy: EgressPolicy, agent: Agent, url: str, index: int | None) -> None:
    """422 `invalid_url` if the egress policy refuses the URL, `domain_not_allowed` if the
    agent's domain rules do; `index` names the spec of a batch in the error details."""
    where = {"index": index} if index is not None else None
    try:
        policy.check_url(url)
    except EgressBlocked as exc:
        raise InvalidUrl(str(exc), details={**(where or {}), "reason": exc.code}) from exc
    if not domain_allowed(url, agent.allowed_domains, agent.blocked_domains):
        raise ValidationFailed(
            "The agent's domain rules forbid this host.", code="domain_not_allowed", details=where
        )


def check_discovery(
    settings: Settings, policy: EgressPolicy, spec: CrawlInput | MapInput, index: int | None
) -> None:
    """A crawl's or map's start URL must be a URL (422 `invalid_url`); one the egress policy
    refuses as a destination is accepted here and ends the job `failed`,
    `blocked_destination`, at once. `limit` is capped (422 `limit_too_large`)."""
    where = {"index": index} if index is not None else {}
    try:
        policy.check_url(spec.url)
    except EgressBlocked as exc:
        if exc.code != "blocked_destination":
            raise InvalidUrl(str(exc), details={**where, "reason": exc.code}) from exc
    if spec.limit > settings.crawl_max_pages:
        raise ValidationFailed(
            f"`limit` may be at most {settings.crawl_max_pages} (OUTRIDER_CRAWL_MAX_PAGES).",
            code="limit_too_large",
            details={**where, "max": settings.crawl_max_pages},
        )


def check_webhook_url(policy: EgressPolicy, url: str, index: int | None = None) -> None:
    """422 `invalid_webhook_url` unless `url` is an http(s) URL the egress policy accepts in
    form (port, host syntax), `webhook_url_forbidden` if it names an internal destination
    (an IP literal in a forbidden network, `localhost`, ...). A host name that resolves
    inside is caught at delivery time: the delivery ends `blocked`, never connected."""
    try:
        policy.check_url(url)
    except EgressBlocked as exc:
        forbidden = exc.code == "blocked_destination"
        raise ValidationFailed(
            f"webhook_url: {exc}",
            code="webhook_url_forbidden" if forbidden else "invalid_webhook_url",
            details={"index": index} if index is not None else None,
        ) from exc


def check_llm(settings: Settings, spec: AnyJobSpec, details: dict[str, Any] | None) -> None:
    """422 `llm_not_configured` for a `json` format when no language model is configured."""
    wants = isinstance(spec.input, FetchInput) and spec.input.json_format is not None
    if wants and not (settings.llm_base_url and settings.llm_model):
        raise ValidationFailed(
            "A `json` format needs a language model: set OUTRIDER_LLM_BASE_URL and "
            "OUTRIDER_LLM_MODEL.",
            code="llm_not_configured",
            details=details,
        )


def job_row(
    settings: Settings,
    policy: EgressPolicy,
    owner_id: uuid.UUID,
    spec: AnyJobSpec,
    agent: Agent,
    index: int | None = None,
) -> dict[str, Any]:
    """The columns of a new job after every check a submission makes: the destination and the
    `webhook_url` against the egress policy and the agent's domain rules, timeouts and attempts
    from spec, agent or settings, capped. `index`: the spec's place in a batch (in errors)."""
    if spec.kind in ("crawl", "map"):
        check_discovery(settings, policy, spec.input, index)
    else:
        check_destination(policy, agent, spec.input.url, index)
    if spec.webhook_url is not None:
        check_webhook_url(policy, spec.webhook_url, index)
    details = {"index": index} if index is not None else None
    check_llm(settings, spec, details)
    timeout_s = spec.timeout_s or agent.timeout_s or settings.job_default_timeout_s
    check_timeout(settings, timeout_s, details)
    max_attempts = spec.max_attempts or agent.max_attempts or settings.job_default_max_attempts
    input_data = spec.input.model_dump(mode="json", by_alias=True, exclude_none=True)
    if len(json_text(input_data).encode()) > settings.job_input_max_bytes:
        raise ValidationFailed(
            f"A job's input may be at most {settings.job_input_max_bytes} bytes.",
            code="input_too_large",
            details=details,
        )
    return {
        "owner_id": owner_id,
        "agent_id": agent.id,
        "kind": spec.kind,
        "queue": queue_for(spec),
        "input": input_data,
        "max_attempts": min(max_attempts, settings.job_max_attempts_limit),
        "timeout_s": timeout_s,
        "priority": spec.priority,
        # A delayed job's due time (others are due when inserted: new_job_values).
        **({"run_after": spec.due_at(utcnow())} if spec.run_at or spec.delay_s else {}),
        "webhook_url": spec.webhook_url,
    }


async def prepare_job_row(
    session: AsyncSession,
    settings: Settings,
    policy: EgressPolicy,
    owner_id: uuid.UUID,
    spec: AnyJobSpec,
) -> dict[str, Any]:
    """Everything a submission checks, for one spec: agent, destination, limits."""
    agent = await resolve_agent(session, owner_id, spec.agent_id)
    return job_row(settings, policy, owner_id, spec, agent)

"""Submitting jobs: validate against policy, insert the rows in one transaction, then enqueue."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AppState, Principal
from shared.errors import IdempotencyConflict
from shared.logging import get_logger
from shared.models import Agent, Job
from shared.queue import enqueue_many
from shared.repositories.job import find_by_idempotency_key, insert_jobs
from shared.services.jobs import check_destination, job_row, resolve_agent
from shared.specs import AnyJobSpec

log = get_logger(__name__)

AnySpec = AnyJobSpec


def request_hash(spec: AnySpec) -> str:
    """A fingerprint of a job spec, to tell a replay from a different request."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _agent_for(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID | None, cache: dict[Any, Agent]
) -> Agent:
    return await resolve_agent(session, principal.owner_id, agent_id, cache)


def _check_url(state: AppState, agent: Agent, url: str, index: int | None) -> None:
    check_destination(state.policy, agent, url, index)


def _row(state: AppState, principal: Principal, spec: AnySpec, agent: Agent) -> dict[str, Any]:
    return job_row(state.settings, principal.owner_id, spec, agent)


async def enqueue_jobs(state: AppState, jobs: Sequence[Job]) -> None:
    """Enqueue committed jobs; if Redis is down, leave them to the reconciler."""
    try:
        await enqueue_many(state.redis, [(str(job.id), job.queue) for job in jobs])
    except (RedisError, OSError) as exc:
        # The rows are committed: the reconciler enqueues them once Redis is back.
        log.warning("jobs.enqueue_deferred", count=len(jobs), error=str(exc)[:200])


async def submit_one(
    state: AppState, principal: Principal, spec: AnySpec, idempotency_key: str | None
) -> tuple[Job, bool]:
    """Create one job (or find the one this Idempotency-Key made); True if created now."""
    fingerprint = request_hash(spec) if idempotency_key else None
    try:
        async with state.sessionmaker.begin() as session:
            if idempotency_key:
                existing = await find_by_idempotency_key(
                    session, principal.owner_id, idempotency_key
                )
                if existing is not None:
                    return _replay(existing, fingerprint), False
            agent = await _agent_for(session, principal, spec.agent_id, {})
            _check_url(state, agent, spec.input.url, None)
            row = _row(state, principal, spec, agent)
            row.update(idempotency_key=idempotency_key, request_hash=fingerprint)
            (job,) = await insert_jobs(session, [row])
    except IntegrityError:
        # A concurrent request with the same key won the race.
        async with state.sessionmaker() as session:
            existing = await find_by_idempotency_key(
                session, principal.owner_id, idempotency_key or ""
            )
        if existing is None:
            raise
        return _replay(existing, fingerprint), False
    await enqueue_jobs(state, [job])
    return job, True


def _replay(existing: Job, fingerprint: str | None) -> Job:
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with a different request body.",
            details={"job_id": str(existing.id)},
        )
    return existing


async def submit_batch(
    state: AppState, principal: Principal, specs: Sequence[AnySpec]
) -> list[Job]:
    """Create many jobs in one transaction and enqueue them in one pipelined round trip."""
    agents: dict[Any, Agent] = {}
    async with state.sessionmaker.begin() as session:
        rows = []
        for index, spec in enumerate(specs):
            agent = await _agent_for(session, principal, spec.agent_id, agents)
            _check_url(state, agent, spec.input.url, index)
            rows.append(_row(state, principal, spec, agent))
        jobs = await insert_jobs(session, rows)
    await enqueue_jobs(state, jobs)
    return jobs

"""Submitting jobs: validate against policy, insert the rows in one transaction, then enqueue."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api import metrics
from api.deps import AppState, Principal, request_session
from api.services import quotas
from shared.errors import IdempotencyConflict, QueueFull
from shared.events import JobLike
from shared.logging import describe, get_logger
from shared.models import Agent, Job
from shared.queue import JobQueue, PreparedEnqueue
from shared.repositories.job import (
    NewJob,
    find_by_idempotency_key,
    insert_jobs,
    new_job_values,
)
from shared.services.job_rows import job_row, resolve_agent
from shared.specs import AnyJobSpec

log = get_logger(__name__)

AnySpec = AnyJobSpec
T = TypeVar("T")


def request_hash(spec: AnySpec) -> str:
    """A fingerprint of a job spec, to tell a replay from a different request."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def enqueue_jobs(state: AppState, jobs: Sequence[JobLike], reason: str = "submitted") -> None:
    """Enqueue (and announce) committed jobs; if Redis is down, leave them to the reconciler."""
    if reason == "retry":  # POST /v1/jobs/{id}/retry
        metrics.jobs_retried_by_user(jobs)
    await _send(state.job_queue, state.job_queue.prepare(jobs, reason))


async def _send(job_queue: JobQueue, prepared: PreparedEnqueue) -> None:
    try:
        await job_queue.send(prepared)
    except (RedisError, OSError) as exc:
        # The rows are committed: the reconciler enqueues them once Redis is back.
        log.warning("jobs.enqueue_deferred", count=prepared.count, error=describe(exc))


async def check_room(job_queue: JobQueue) -> None:
    """Refuse new jobs while Redis is full (503 `queue_full`): a job is accepted only while it
    can be queued. (Jobs whose rows committed before the queue was found full are not lost:
    the reconciler enqueues them once Redis has room.)"""
    if job_queue.full and not await job_queue.has_room():  # no await while Redis has room
        raise QueueFull(
            "The queue (Redis) is out of memory: no new jobs until it has room. Retry later."
        )


async def submit_one(
    state: AppState, principal: Principal, spec: AnySpec, idempotency_key: str | None
) -> tuple[Job | NewJob, bool]:
    """Create one job (or find the one this Idempotency-Key made); True if created now."""
    await check_room(state.job_queue)
    if idempotency_key:
        async with request_session(state) as session:
            return await _submit_in_session(state, session, principal, spec, idempotency_key)
    # The common case: the row shares one INSERT, COMMIT and enqueue with concurrent requests.
    # No database connection is held while the group commit runs (a burst of submissions
    # would otherwise hold the whole pool while waiting for the writer, which needs one too).
    if spec.agent_id is None:
        agent = principal.default_agent  # it came with the key
    else:
        async with request_session(state) as session:
            agent = await resolve_agent(session, principal.owner_id, spec.agent_id)
    row = job_row(state.settings, state.policy, principal.owner_id, spec, agent)
    reservation = await quotas.reserve(state, principal.owner_id, 1)
    try:
        return await state.submitter.submit(row), True
    except Exception:  # not a cancellation: the shielded flush goes on without the caller
        await quotas.release(state, reservation)
        raise


async def _submit_in_session(
    state: AppState,
    session: AsyncSession,
    principal: Principal,
    spec: AnySpec,
    idempotency_key: str | None,
) -> tuple[Job | NewJob, bool]:
    fingerprint = request_hash(spec) if idempotency_key else None
    if idempotency_key:
        existing = await find_by_idempotency_key(session, principal.owner_id, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint), False
    agent = await resolve_agent(session, principal.owner_id, spec.agent_id, _agents(principal))
    row = job_row(state.settings, state.policy, principal.owner_id, spec, agent)
    row.update(idempotency_key=idempotency_key, request_hash=fingerprint)
    reservation = await quotas.reserve(state, principal.owner_id, 1)
    try:
        (job,) = await insert_jobs(session, [row])
        await session.commit()
    except Exception as exc:
        await quotas.release(state, reservation)
        if not isinstance(exc, IntegrityError):
            raise
        # A concurrent request with the same key won the race.
        await session.rollback()
        existing = await find_by_idempotency_key(session, principal.owner_id, idempotency_key or "")
        if existing is None:
            raise
        return _replay(existing, fingerprint), False
    await after_commit(state.job_queue, [job])
    return job, True


async def after_commit(job_queue: JobQueue, jobs: Sequence[JobLike]) -> None:
    """What follows the commit of new jobs: count them, enqueue and announce them."""
    metrics.jobs_submitted(jobs)
    await _send(job_queue, job_queue.prepare(jobs, "submitted"))


def _agents(principal: Principal) -> dict[Any, Agent]:
    return {None: principal.default_agent}


def _replay(existing: Job, fingerprint: str | None) -> Job:
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with a different request body.",
            details={"job_id": str(existing.id)},
        )
    return existing


async def submit_batch(
    state: AppState,
    session: AsyncSession,
    principal: Principal,
    specs: Sequence[AnySpec],
    answer: Callable[[list[NewJob]], T],
) -> T:
    """Create many jobs in one transaction and enqueue them in one pipelined round trip;
    returns `answer(jobs)`, which (like the queue's entries) is built while the database
    writes the rows, and stands only once they have committed."""
    await check_room(state.job_queue)
    agents = _agents(principal)
    rows = []
    for index, spec in enumerate(specs):
        agent = await resolve_agent(session, principal.owner_id, spec.agent_id, agents)
        rows.append(job_row(state.settings, state.policy, principal.owner_id, spec, agent, index))
    # The job store's insert (one asyncpg statement on PostgreSQL). The agent lookups' read
    # ends first: on SQLite no reader may stay open while another connection writes.
    await session.commit()
    reservation = await quotas.reserve(state, principal.owner_id, len(rows))
    values = new_job_values(rows)  # the ids and times the INSERT writes
    jobs = [NewJob(**value) for value in values]
    insert = asyncio.ensure_future(state.store.insert(values))
    try:
        await asyncio.sleep(0)  # the INSERT goes out; what follows overlaps the database's work
        answered = answer(jobs)
        prepared = state.job_queue.prepare(jobs, "submitted")
        await insert
    except BaseException:
        insert.cancel()  # a dropped request, or a failure here: nothing is answered
        insert.add_done_callback(lambda task: task.cancelled() or task.exception())
        await quotas.release(state, reservation)
        raise
    metrics.jobs_submitted(jobs)
    await _send(state.job_queue, prepared)
    return answered

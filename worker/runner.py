"""The one arq entry point every job runs through: claim, execute, record, retry."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import structlog
from arq import Retry
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.job_errors import JobErrorCode
from shared.jsonsafe import scrub
from shared.logging import describe, get_logger
from shared.models import AttemptOutcome, JobStatus, utcnow
from shared.repositories.execution import Claim, Outcome
from worker import counters
from worker.crawl.redirects import redirect_claim
from worker.crawl.refill import refill
from worker.crawl.settle import settle_page
from worker.engines.base import Engine, EngineContext, Meter, Parked, check_headers
from worker.engines.crawl import run_crawl
from worker.engines.fetch import run_fetch
from worker.engines.http import run_http
from worker.engines.map import run_map
from worker.engines.scrape import run_scrape
from worker.job_events import job_cancelled, job_ended, job_progress, job_started
from worker.politeness import polite, user_agent
from worker.proxies import ProxyPicker, agent_routes, target_authority, target_host
from worker.proxy_tunnel import ProxyRoute
from worker.result_cache import from_cache, mark_fresh, remember
from worker.retry import Deferred, JobError, backoff_s, classify
from worker.robots import CachedRobots
from worker.session_state import JobSession
from worker.sessions import held_session, save_session, session_client, session_name
from worker.state import Running, WorkerState

log = get_logger(__name__)


async def _run_render(ctx: EngineContext) -> dict[str, Any]:
    from worker.engines.render import run_render  # Playwright loads in browser workers only

    return await run_render(ctx)


ENGINES: dict[str, Engine] = {
    "http": run_http,
    "fetch": run_fetch,
    "render": _run_render,
    "scrape": run_scrape,
    "crawl": run_crawl,
    "map": run_map,
}
# SQLAlchemy's errors, and asyncpg's from the claim and outcome statements.
DB_ERRORS = (
    OperationalError,
    InterfaceError,
    DBAPIError,
    PoolTimeoutError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
DB_UNAVAILABLE_DEFER_S = 3.0
OUTCOME_WRITE_PATIENCE_S = 90.0


async def _write_outcome(
    state: WorkerState, claim: Claim, outcome: Outcome, meter: Meter | None = None
) -> bool:
    if meter is not None:  # what the attempt read counts, however it ended
        outcome = replace(outcome, bytes_fetched=meter.bytes_fetched)
    # PostgreSQL may be restarting: keep trying for a while rather than lose the result.
    written = False
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(OUTCOME_WRITE_PATIENCE_S),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(DB_ERRORS),
        reraise=True,
    ):
        with attempt:
            written = await state.store.record_outcome(claim, outcome)
    if written:
        await job_ended(state, claim.job, outcome)
        if claim.job.parent_id is not None and outcome.status != JobStatus.QUEUED:
            await _page_ended(state, claim, outcome.status, outcome.error)
    return written


async def _page_ended(
    state: WorkerState, claim: Claim, status: str, error: dict[str, Any] | None
) -> None:
    """A crawl's page ended: settle it in the frontier and refill the crawl. A failure here
    is repaired by the reconciler (it settles pages whose job ended unrecorded)."""
    assert claim.job.parent_id is not None
    robots = None
    if claim.agent.obey_robots:
        agent = user_agent(state, claim.agent)
        robots = CachedRobots(state.redis, agent).disallows
    try:
        await settle_page(state, claim.job.parent_id, claim.job.id, (status, error), robots)
    except Exception as exc:
        log.warning("crawl.settle_failed", error=describe(exc))


async def _park(state: WorkerState, claim: Claim, result: dict[str, Any]) -> None:
    """The job goes on without this worker (a crawl): leave it running, unheld, and refill."""
    parked = await state.store.park(claim, result)
    log.info("job.parked" if parked else "job.result_discarded")
    if parked:
        try:
            await refill(state, claim.job.id)
        except DB_ERRORS as exc:  # the reconciler refills parked crawls on every pass
            log.warning("crawl.refill_failed", error=describe(exc))


def _failure_outcome(state: WorkerState, claim: Claim, error: JobError) -> Outcome:
    job, agent = claim.job, claim.agent
    if error.retryable and job.attempts < job.max_attempts:
        delay = backoff_s(
            job.attempts,
            agent.backoff_base_s or state.settings.backoff_base_s,
            agent.backoff_max_s or state.settings.backoff_max_s,
            error.retry_after_s,
        )
        return Outcome(
            status=JobStatus.QUEUED,
            attempt_outcome=AttemptOutcome.RETRYING,
            error=error.as_dict(),
            run_after=utcnow() + timedelta(seconds=delay),
        )
    return Outcome(
        status=JobStatus.FAILED, attempt_outcome=AttemptOutcome.FAILED, error=error.as_dict()
    )


async def _execute(state: WorkerState, claim: Claim, meter: Meter) -> dict[str, Any]:
    secrets = state.box.open(claim.agent.secrets_ciphertext)
    check_headers(claim.job, claim.agent, secrets)
    deadline = asyncio.get_running_loop().time() + claim.job.timeout_s
    if claim.job.kind not in ENGINES:
        raise JobError(
            JobErrorCode.KIND_NOT_SUPPORTED,
            f"No engine for {claim.job.kind!r} jobs.",
            retryable=False,
        )
    name = session_name(claim.job)
    if name is None:
        if (cached := await from_cache(state, claim.job)) is not None:
            return cached  # no request at all: politeness and robots.txt are for requests
        return await _execute_routed(state, claim, secrets, deadline, None, meter)
    # The job's session (worker/sessions.py): its lock held for the whole attempt, whatever
    # proxy serves it; its state written back on success. Session jobs skip the result cache.
    async with asyncio.timeout_at(deadline), held_session(state, claim, name) as session:
        result = await _execute_routed(state, claim, secrets, deadline, session, meter)
        await save_session(state, claim, session)
        return result


async def _execute_routed(
    state: WorkerState,
    claim: Claim,
    secrets: dict[str, str],
    deadline: float,
    session: JobSession | None,
    meter: Meter,
) -> dict[str, Any]:
    if not claim.agent.proxies:
        # The owner's own connection pool, for robots.txt too: a tenant wall.
        async with state.sessions.lease(claim.job.owner_id) as http:
            return await _execute_with(state, claim, http, secrets, deadline, None, session, meter)
    return await _execute_proxied(state, claim, secrets, deadline, session, meter)


async def _execute_proxied(
    state: WorkerState,
    claim: Claim,
    secrets: dict[str, str],
    deadline: float,
    session: JobSession | None,
    meter: Meter,
) -> dict[str, Any]:
    """Through the agent's proxies, in rotation order: a proxy that fails is benched and the
    attempt goes on with the next (the same deadline); none left: `proxy_unavailable`."""
    routes = agent_routes(claim.agent, secrets, state.settings.proxy_ca_file)
    host, target = target_host(claim.job.input), target_authority(claim.job.input)
    bench_s = state.settings.proxy_bench_s
    picker = ProxyPicker(state.redis, claim.agent, routes, host, bench_s, target)

    async def through(route: ProxyRoute) -> dict[str, Any]:
        # The owner's pool for this proxy alone: never shared with direct requests or another
        # proxy's tunnels.
        async with state.sessions.lease(claim.job.owner_id, route) as http:
            return await _execute_with(state, claim, http, secrets, deadline, route, session, meter)

    route, result = await picker.through(through)
    if isinstance(result.get("metadata"), dict):
        result["metadata"]["proxy"] = route.url
    else:
        result["metadata"] = {"proxy": route.url}
    return result


async def _execute_with(
    state: WorkerState,
    claim: Claim,
    http: aiohttp.ClientSession,
    secrets: dict[str, str],
    deadline: float,
    proxy: ProxyRoute | None,
    session: JobSession | None,
    meter: Meter,
) -> dict[str, Any]:
    ctx = EngineContext(
        job=claim.job,
        agent=claim.agent,
        secrets=secrets,
        settings=state.settings,
        policy=state.policy,
        http=http,
        report=lambda progress: job_progress(state, claim, progress),
        deadline=deadline,
        browser=state.render_runtime,
        frontier=state.frontier,
        redis=state.redis,
        claim_redirect=redirect_claim(state.frontier, claim.job),
        proxy=proxy,
        meter=meter,
    )
    engine = ENGINES[claim.job.kind]
    if session is None:
        return await _run_engine(state, claim, ctx, engine, http)
    # The session's cookies in a jar of the job's own, on the same pool (so the same proxy).
    async with session_client(http, state, session.jar) as jarred:
        in_session = dataclasses.replace(ctx, http=jarred, session=session, plain_http=http)
        return await _run_engine(state, claim, in_session, engine, http)


async def _run_engine(
    state: WorkerState,
    claim: Claim,
    ctx: EngineContext,
    engine: Engine,
    plain: aiohttp.ClientSession,
) -> dict[str, Any]:
    assert ctx.deadline is not None
    try:
        # Politeness (robots.txt, the host's slot) counts against the job's timeout; robots.txt
        # is read through `plain`, the owner's pool without a session's cookies.
        async with asyncio.timeout_at(ctx.deadline), polite(state, claim, plain):
            return mark_fresh(claim.job, await engine(ctx))
    except TimeoutError as exc:
        if isinstance(exc, JobError):  # pragma: no cover - JobError is not a TimeoutError
            raise
        raise JobError(
            JobErrorCode.TIMEOUT,
            f"The job exceeded its {claim.job.timeout_s:g} s timeout.",
            retryable=True,
        ) from exc


async def _claim(state: WorkerState, job_id: uuid.UUID) -> Claim | None:
    try:
        return await state.store.claim(job_id, state.worker_id, state.settings.worker_lease_s)
    except DB_ERRORS as exc:
        log.warning("job.claim_failed", error=describe(exc))
        raise Retry(defer=DB_UNAVAILABLE_DEFER_S) from exc


async def run_job(ctx: dict[str, Any], job_id: str, agent_id: str = "") -> None:
    """Run one attempt of a job. (`agent_id`, in the job's arq payload, is for the take
    script's per-agent limit, worker/queue_worker.py; the claim reads the row's.)

    Idempotency: the claim only succeeds for a `queued` row, so a duplicate delivery is a no-op;
    every later write is fenced on the claim. Retries: a transient failure puts the row back to
    `queued` with a backoff and raises arq's `Retry`; a shutdown puts it back without using up an
    attempt; a user's cancel stops the engine within a second or two.
    """
    state: WorkerState = ctx["state"]
    claim = await _claim(state, uuid.UUID(job_id))
    if claim is None:
        return
    structlog.contextvars.bind_contextvars(job_id=job_id, attempt=claim.job.attempts)
    await job_started(state, claim)
    try:
        await _run_claimed(state, claim)
    finally:
        state.running.pop(claim.job.id, None)
        structlog.contextvars.unbind_contextvars("job_id", "attempt")


async def _run_claimed(state: WorkerState, claim: Claim) -> None:
    log.info("job.claimed", kind=claim.job.kind)
    meter = Meter()
    task: asyncio.Task[Any] = asyncio.create_task(_execute(state, claim, meter))
    running = Running(fence=claim.fence, task=task)
    state.running[claim.job.id] = running
    try:
        result = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if running.cancelled_by_user and not (current and current.cancelling()):
            await state.store.record_cancelled(claim)
            job_cancelled(state, claim.job)
            log.info("job.cancelled")
            if claim.job.parent_id is not None:
                await _page_ended(state, claim, JobStatus.CANCELLED, None)
            return
        # Shutdown: give the job back without using up the attempt, then let arq requeue it.
        outcome = Outcome(
            status=JobStatus.QUEUED,
            attempt_outcome=AttemptOutcome.INTERRUPTED,
            run_after=utcnow(),
            refund_attempt=True,
        )
        await asyncio.shield(_write_outcome(state, claim, outcome, meter))
        log.info("job.interrupted")
        raise
    except Parked as parked:
        await _park(state, claim, scrub(parked.result))
        return
    except Deferred as deferral:
        outcome = Outcome(
            status=JobStatus.QUEUED,
            attempt_outcome=AttemptOutcome.DEFERRED,
            run_after=utcnow() + timedelta(seconds=deferral.delay_s),
            refund_attempt=True,
        )
        if await _write_outcome(state, claim, outcome, meter):
            log.info("job.deferred", reason=deferral.reason, defer_s=round(deferral.delay_s, 2))
            raise Retry(defer=deferral.delay_s) from deferral
        return
    except Exception as exc:
        error = classify(exc)
        counters.attempt_refused(exc)
        if error.code == "internal_error":
            log.exception("job.crashed")
        outcome = _failure_outcome(state, claim, error)
        if (
            await _write_outcome(state, claim, outcome, meter)
            and outcome.status == JobStatus.QUEUED
        ):
            assert outcome.run_after is not None
            delay = max((outcome.run_after - utcnow()).total_seconds(), 0.0)
            log.info("job.retrying", code=error.code, defer_s=round(delay, 2))
            raise Retry(defer=delay) from exc
        log.info("job.failed", code=error.code)
        return
    result = scrub(result)
    written = await _write_outcome(
        state,
        claim,
        Outcome(
            status=JobStatus.SUCCEEDED,
            attempt_outcome=AttemptOutcome.SUCCEEDED,
            result=result,
        ),
        meter,
    )
    log.info("job.succeeded" if written else "job.result_discarded")
    if written:
        await remember(state, claim.job, result)

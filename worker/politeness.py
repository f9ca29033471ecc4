"""The runner's politeness hook: robots.txt, then a per-host slot, around one engine call.

Every kind with `input.url` takes a slot on the URL's host (worker/host_gate.py); only the
page kinds (fetch, render, scrape) consult robots.txt and get the default limits; `http` API
calls are limited only by what their agent sets. A slot that is
free within `host_wait_max_s` (1 s; at most half the job's timeout) is waited for in-process,
holding the worker's job slot: cheaper than a round trip through the queue. A farther one
raises `Deferred`, which puts the job back without using up an attempt. A 429/503 with
Retry-After, once it reaches the runner as a JobError, holds the host back for every worker
(capped at `host_backoff_max_s`).

Only the first request of an attempt is metered: redirects and in-attempt quick retries ride
on the same slot, and a browser's subresources are not governed. A job that makes several
requests itself (`map`) takes a slot per request with `paced`, which waits out a refusal
in-process instead of deferring the job; both are `host_slot`, the one admit/hold/backoff step.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from redis.exceptions import RedisError

from shared.domains import domain_allowed
from shared.errors import EgressBlocked
from shared.logging import describe, get_logger
from shared.models import Agent
from shared.repositories.execution import Claim
from shared.settings import Settings
from shared.urls import host_key
from worker import counters
from worker.host_gate import Admission, HostGate, HostLimits
from worker.http_client import DEFAULT_USER_AGENT
from worker.retry import Deferred, JobError
from worker.robots import RobotsCache, check_robots
from worker.state import WorkerState

log = get_logger(__name__)

URL_KINDS = frozenset({"http", "fetch", "render", "scrape"})
ROBOTS_KINDS = frozenset({"fetch", "render", "scrape"})
SLOWDOWN_STATUSES = frozenset({429, 503})
CONCURRENCY_RETRY_S = 1.0
UNAVAILABLE_RETRY_S = 2.0
EARLY_RETURN_S = 0.2


def limits_for(
    settings: Settings, agent: Agent, crawl_delay_s: float | None, *, crawling: bool
) -> HostLimits:
    """The agent's limits, slowed down to robots.txt's Crawl-delay. The default limits apply
    to crawling (fetch, render, scrape); `http` API calls are limited only by their agent."""
    rate = agent.host_rate_per_s or (settings.host_rate_per_s if crawling else 0.0)
    if crawl_delay_s:
        rate = min(rate, 1 / crawl_delay_s) if rate > 0 else 1 / crawl_delay_s
    concurrency = agent.host_concurrency or (settings.host_concurrency if crawling else 0)
    return HostLimits(rate_per_s=rate, concurrency=concurrency, burst=settings.host_burst)


def user_agent(state: WorkerState, agent: Agent) -> str:
    """The User-Agent the engines send for this agent."""
    if agent.user_agent:
        return agent.user_agent
    configured = CIMultiDict(agent.headers or {}).get("User-Agent")
    return configured or DEFAULT_USER_AGENT


def defer_s(settings: Settings, admission: Admission) -> float:
    """When a turned-away job should come back."""
    if admission.reason == "host_concurrency":  # a slot frees when a request ends: poll
        return CONCURRENCY_RETRY_S * random.uniform(0.5, 1.5)
    # A little early: the in-process wait absorbs the rest, so the slot is not missed.
    early = min(EARLY_RETURN_S, settings.host_wait_max_s / 2)
    return max(admission.wait_s - early, 0.05)


def _governed_url(state: WorkerState, claim: Claim) -> tuple[str, str] | None:
    """(url, host) of a job we may contact; None leaves any refusal to the engine."""
    url = claim.job.input.get("url") if claim.job.kind in URL_KINDS else None
    host = host_key(url) if isinstance(url, str) else None
    if url is None or host is None:
        return None
    try:
        state.policy.check_url(url)
    except EgressBlocked:
        return None
    agent = claim.agent
    if not domain_allowed(url, agent.allowed_domains, agent.blocked_domains):
        return None
    return url, host


async def _note_slowdown(settings: Settings, gate: HostGate, host: str, error: JobError) -> None:
    status = (error.details or {}).get("status")
    if error.retry_after_s is None or status not in SLOWDOWN_STATUSES:
        return
    delay = min(error.retry_after_s, settings.host_backoff_max_s)
    if delay <= 0:
        return
    try:
        left = await gate.back_off(host, delay)
    except (RedisError, OSError) as exc:
        log.warning("host.backoff_failed", host=host, error=describe(exc))
        return
    log.info("host.backoff", host=host, status=status, backoff_s=round(left, 2))


def _wait_reason(admission: Admission, crawl_delay_s: float | None) -> str:
    """Why a request is held back, for the metrics. A granted wait is reported as `ok` (its
    cause, rate or backoff, is not kept): `slot`; robots.txt's pace is `crawl_delay`."""
    reason = "slot" if admission.granted else admission.reason
    return "crawl_delay" if crawl_delay_s and reason in ("slot", "host_rate") else reason


@contextlib.contextmanager
def _limits_reachable(host: str) -> Iterator[None]:
    """Turn a Redis outage into Deferred. The shared limits (and robots.txt's cache) live in
    Redis: without them, wait rather than hit the host blind, and do not charge the job an
    attempt for our outage."""
    try:
        yield
    except (RedisError, OSError) as exc:
        log.warning("host.limits_unavailable", host=host, error=describe(exc))
        counters.politeness_wait("unavailable", "defer", UNAVAILABLE_RETRY_S)
        raise Deferred(UNAVAILABLE_RETRY_S, "politeness_unavailable") from exc


@dataclass(frozen=True)
class Turn:
    """How one request waits for its host: its limits, the longest in-process wait for a
    reserved slot, robots.txt's Crawl-delay (for the metrics), and what a refusal means."""

    limits: HostLimits
    max_wait_s: float
    crawl_delay_s: float | None = None
    wait_when_refused: bool = False


async def _admit(
    gate: HostGate, settings: Settings, host: str, token: str, turn: Turn
) -> Admission:
    """A granted admission. Turned away: Deferred, or (`turn.wait_when_refused`) a sleep
    until the suggested return time and another try."""
    while True:
        with _limits_reachable(host):
            admission = await gate.admit(
                host, token, turn.limits, max_wait_s=turn.max_wait_s, lease_s=settings.host_lease_s
            )
        if admission.granted:
            return admission
        delay_s = defer_s(settings, admission)
        reason = _wait_reason(admission, turn.crawl_delay_s)
        if not turn.wait_when_refused:
            counters.politeness_wait(reason, "defer", delay_s)
            raise Deferred(delay_s, admission.reason)
        counters.politeness_wait(reason, "wait", delay_s)
        await asyncio.sleep(delay_s)


@contextlib.asynccontextmanager
async def host_slot(
    gate: HostGate, settings: Settings, host: str, token: str, turn: Turn
) -> AsyncIterator[None]:
    """Run the block as one request to `host` (`token` unique per request): admitted by the
    shared gate, after the reserved wait, holding a lease while it runs if the host has a
    concurrency cap; a 429/503 JobError with Retry-After from the block holds the host back
    for every worker. The one mechanism under `polite` (whole jobs) and `paced` (a job's own
    requests)."""
    admission = await _admit(gate, settings, host, token, turn)
    async with contextlib.AsyncExitStack() as stack:
        if admission.leased:
            await stack.enter_async_context(gate.holding(host, token, settings.host_lease_s))
        if admission.wait_s > 0:
            reason = _wait_reason(admission, turn.crawl_delay_s)
            counters.politeness_wait(reason, "wait", admission.wait_s)
            await asyncio.sleep(admission.wait_s)
        try:
            yield
        except JobError as error:
            await _note_slowdown(settings, gate, host, error)
            raise


@contextlib.asynccontextmanager
async def polite(
    state: WorkerState, claim: Claim, http: aiohttp.ClientSession
) -> AsyncIterator[None]:
    """Run the block as a polite client of the job's host, or raise JobError/Deferred.
    robots.txt is fetched through `http`, the job's owner's session."""
    governed = _governed_url(state, claim)
    if governed is None:
        yield
        return
    url, host = governed
    settings, agent = state.settings, claim.agent
    crawling = claim.job.kind in ROBOTS_KINDS
    crawl_delay_s = None
    if crawling and agent.obey_robots:
        with _limits_reachable(host):
            cache = RobotsCache(state.redis, http, settings)
            crawl_delay_s = await check_robots(cache, url, user_agent(state, agent))
    turn = Turn(
        limits_for(settings, agent, crawl_delay_s, crawling=crawling),
        max_wait_s=min(settings.host_wait_max_s, claim.job.timeout_s / 2),
        crawl_delay_s=crawl_delay_s,
    )
    async with host_slot(state.gate, settings, host, f"{claim.job.id}:{claim.fence}", turn):
        yield


@contextlib.asynccontextmanager
async def paced(
    gate: HostGate,
    settings: Settings,
    agent: Agent,
    url: str,
    token: str,
    crawl_delay_s: float | None = None,
) -> AsyncIterator[None]:
    """One request of a job that makes several itself (a `map` following links), as a polite
    client of its host: the same shared slots as whole jobs, but a turned-away request waits
    in-process (the job holds its worker slot anyway) instead of being deferred. `token`
    names this request: unique per request. Redis down: Deferred, like `polite`."""
    host = host_key(url)
    if host is None:
        yield
        return
    limits = limits_for(settings, agent, crawl_delay_s, crawling=True)
    turn = Turn(limits, settings.host_wait_max_s, crawl_delay_s, wait_when_refused=True)
    async with host_slot(gate, settings, host, token, turn):
        yield

"""What every engine gets to do its work: the job, its agent profile and the shared clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from shared.domains import domain_allowed
from shared.egress import EgressPolicy
from shared.headers import first_problem
from shared.job_errors import JobErrorCode
from shared.models import Agent, Job
from shared.settings import Settings
from worker.retry import JobError

if TYPE_CHECKING:  # Playwright loads on browser workers only
    from redis.asyncio import Redis

    from shared.repositories.frontier_store import FrontierStore
    from worker.browser import RenderRuntime
    from worker.proxy_tunnel import ProxyRoute
    from worker.session_state import JobSession


@dataclass
class Meter:
    """What an attempt used, for GET /v1/usage: the bytes of the bodies it read (a page's, a
    rendered page's HTML, an API call's), written to the job row with the attempt's end."""

    bytes_fetched: int = 0

    def fetched(self, size: int) -> None:
        self.bytes_fetched += size


@dataclass(frozen=True)
class EngineContext:
    """One attempt's view of the world. `secrets` are decrypted for this attempt only."""

    job: Job
    agent: Agent
    secrets: dict[str, str]
    settings: Settings
    policy: EgressPolicy
    http: aiohttp.ClientSession
    report: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    deadline: float | None = None  # the event loop's time at which the job times out
    browser: RenderRuntime | None = None  # on browser workers: Chromium and the database
    frontier: FrontierStore | None = None  # crawls: the frontier's database
    redis: Redis | None = None  # crawls and maps: the shared robots.txt cache
    # A crawl's page: asked before each redirect is followed; False: another page has the
    # URL (this one is its duplicate, see worker/crawl/redirects.py).
    claim_redirect: Callable[[str], Awaitable[bool]] | None = None
    # The job's `session` (worker/sessions.py): `http` then carries its cookie jar, and a
    # render starts from (and hands back) its storage state.
    session: JobSession | None = None
    # With a session: the owner's pool without its cookies (robots.txt is read through it).
    plain_http: aiohttp.ClientSession | None = None
    # The upstream proxy this attempt goes through (`http` is its session; a render's browser
    # context is chained to it), or None: direct.
    proxy: ProxyRoute | None = None
    meter: Meter = field(default_factory=Meter)

    @property
    def robots_http(self) -> aiohttp.ClientSession:
        """The client robots.txt is read through: never with a session's cookies."""
        return self.plain_http or self.http

    def render_runtime(self) -> RenderRuntime:
        """The browser of this worker; a job elsewhere fails `browser_unavailable`."""
        if self.browser is None:
            raise JobError(
                JobErrorCode.BROWSER_UNAVAILABLE,
                "No browser here: render jobs run on `outrider worker --queue browser`.",
                retryable=True,
            )
        return self.browser

    def time_left(self, wanted_s: float) -> float:
        """`wanted_s`, or less if the job's own timeout comes sooner (politeness and robots.txt
        have used some of it)."""
        if self.deadline is None:
            return wanted_s
        return max(min(wanted_s, self.deadline - asyncio.get_running_loop().time()), 0.0)

    async def progress(self, stage: str, **info: Any) -> None:
        """Tell the job's watchers how far it got (a `progress` event)."""
        if self.report is not None:
            await self.report({"stage": stage, **info})


Engine = Callable[[EngineContext], Awaitable[dict[str, Any]]]


class DuplicatePage(Exception):
    """A crawl's page redirected to a URL another page of the crawl has: not fetched."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(url)
        self.url = url
        self.status = status


class Parked(Exception):
    """Raised by an engine whose job goes on without a worker (a crawl: its frontier and
    page jobs do the rest): the job stays `running`, unheld, with `result` so far."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("parked")
        self.result = result


def check_destination(ctx: EngineContext, url: str) -> str:
    """The normalized URL if the egress policy and the agent's domain rules allow it."""
    url = ctx.policy.check_url(url)
    if not domain_allowed(url, ctx.agent.allowed_domains, ctx.agent.blocked_domains):
        raise JobError(
            JobErrorCode.DOMAIN_NOT_ALLOWED,
            "The agent's domain rules forbid this host.",
            retryable=False,
        )
    return url


def _stored_headers(job: Job, agent: Agent, secrets: dict[str, str]) -> list[tuple[str, str]]:
    pairs = list((agent.headers or {}).items())
    if agent.user_agent:
        pairs.append(("User-Agent", agent.user_agent))
    given = job.input.get("headers")
    if isinstance(given, dict):
        pairs.extend((str(name), str(value)) for name, value in given.items())
    auth = job.input.get("auth")
    if isinstance(auth, dict):
        name = auth.get("header") if auth.get("scheme") == "header" else "Authorization"
        pairs.append((str(name or "Authorization"), secrets.get(str(auth.get("secret")), "")))
    return pairs


def check_headers(job: Job, agent: Agent, secrets: dict[str, str]) -> None:
    """Refuse, before any request, headers that break the rules of shared/headers.py: those
    of rows saved before the rules or written around the API (the agent's headers and user
    agent, the job's), and the secret an `auth` puts in a header. JobError `forbidden_header`
    or `invalid_header`, not retried (the secret's value is never quoted)."""
    problem = first_problem(_stored_headers(job, agent, secrets))
    if problem is not None:
        raise JobError(
            problem.code, problem.message, retryable=False, details={"header": problem.header}
        )

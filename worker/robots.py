"""robots.txt (RFC 9309) for fetch/render/scrape jobs: fetched once per origin through the
egress-guarded session, cached in Redis, parsed with Protego (the parser Scrapy uses).

What an answer means, following RFC 9309 and Google's crawler:
- 2xx: the rules, with Crawl-delay (capped at 60 s) for our user agent. Only the first 500
  KiB are read (Google's limit): the rules before that apply, a line cut by it is dropped.
- 4xx other than 429, a redirect loop, a destination the egress policy refuses: no rules,
  everything allowed.
- 429, 5xx, timeout, connection error: "unreachable", which means disallow everything for now.
  The last good copy, kept up to 7 days past its TTL, is used instead if there is one; else
  the attempt fails with the retryable `robots_unavailable` (it uses up an attempt, so a
  server that never recovers ends the job). The failure is remembered for 60 s so a broken
  server is not asked once per job.
A good copy is fresh for `robots_cache_ttl_s` (24 h, the RFC's upper bound). One worker
fetches at a time per origin (a Redis lock); the others wait briefly for its copy, else defer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from protego import Protego
from redis.asyncio import Redis
from redis.exceptions import LockError

from shared.errors import EgressBlocked
from shared.job_errors import JobErrorCode
from shared.settings import Settings
from shared.urls import host_key
from worker.bodies import read_capped
from worker.retry import Deferred, JobError

ROBOTS_MAX_BYTES = 500 * 1024
MAX_REDIRECTS = 5
MAX_CRAWL_DELAY_S = 60.0
UNREACHABLE_REMEMBER_S = 60.0
STALE_KEEP_S = 7 * 86400.0
PEER_WAIT_S = 2.0
PEER_POLL_S = 0.1
PENDING_DEFER_S = 1.0
INLINE_PARSE_MAX = 64 * 1024

Status = Literal["rules", "allow_all", "unreachable"]


@dataclass(frozen=True)
class RobotsFile:
    """One origin's robots.txt as fetched at `fetched_at` (epoch seconds)."""

    status: Status
    body: str
    fetched_at: float

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> RobotsFile | None:
        try:
            data = json.loads(raw)
            return cls(status=data["status"], body=data["body"], fetched_at=data["fetched_at"])
        except (ValueError, KeyError, TypeError):
            return None


def robots_url(url: str) -> str | None:
    """The robots.txt that governs `url`: same scheme, host and port."""
    host = host_key(url)
    if host is None:
        return None
    return f"{urlsplit(url).scheme.lower()}://{host}/robots.txt"


def cache_key(robots: str) -> str:
    return f"outrider:robots:{robots}"


@functools.lru_cache(maxsize=256)
def _parse(body: str) -> Protego:
    return Protego.parse(body)


async def _parser(body: str) -> Protego:
    if len(body) > INLINE_PARSE_MAX:  # a big file would hold up the loop
        return await asyncio.to_thread(_parse, body)
    return _parse(body)


async def _rules_text(response: aiohttp.ClientResponse) -> str:
    body = await read_capped(response, ROBOTS_MAX_BYTES)
    data = body.data
    if body.truncated:  # half a rule could mean another rule (`Disallow: /a` of `/about/x`)
        data = data[: max(data.rfind(b"\n"), data.rfind(b"\r")) + 1]
    return data.decode("utf-8", errors="replace")


async def download(
    http: aiohttp.ClientSession, robots: str, user_agent: str, timeout_s: float
) -> RobotsFile | None:
    """GET a robots.txt and classify the answer; None if the egress policy refuses it or the
    host does not resolve."""
    now = time.time()
    try:
        async with http.get(
            robots,
            headers={"User-Agent": user_agent},
            max_redirects=MAX_REDIRECTS,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            if 200 <= response.status < 300:
                return RobotsFile("rules", await _rules_text(response), now)
            if response.status == 429 or response.status >= 500:
                return RobotsFile("unreachable", "", now)
            return RobotsFile("allow_all", "", now)
    except (EgressBlocked, aiohttp.ClientConnectorDNSError):
        return None  # the page's own request will fail the same way, with its own code
    except aiohttp.TooManyRedirects:
        return RobotsFile("allow_all", "", now)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return RobotsFile("unreachable", "", now)


class RobotsCache:
    """robots.txt files in Redis, shared by every worker."""

    def __init__(self, redis: Redis, http: aiohttp.ClientSession, settings: Settings) -> None:
        self.redis = redis
        self.http = http
        self.ttl_s = settings.robots_cache_ttl_s
        self.timeout_s = settings.robots_timeout_s

    async def _load(self, robots: str) -> RobotsFile | None:
        raw = await self.redis.get(cache_key(robots))
        return RobotsFile.loads(raw) if raw else None

    def _fresh(self, found: RobotsFile | None) -> bool:
        return found is not None and time.time() - found.fetched_at < self.ttl_s

    async def get(self, robots: str, user_agent: str) -> RobotsFile:
        """The file for `robots`, fetched if the cached copy is missing or stale."""
        found = await self._load(robots)
        if found is not None and self._fresh(found):
            return found
        failed = cache_key(robots) + ":unreachable"
        if await self.redis.exists(failed):
            return found or RobotsFile("unreachable", "", time.time())
        lock = self.redis.lock(
            cache_key(robots) + ":fetching", timeout=self.timeout_s + 5, blocking=False
        )
        if not await lock.acquire():
            return await self._from_peer(robots, found)
        try:
            again = await self._load(robots)  # a peer may have stored it while we looked
            if again is not None and self._fresh(again):
                return again
            fetched = await download(self.http, robots, user_agent, self.timeout_s)
            if fetched is None:
                return RobotsFile("allow_all", "", time.time())
            if fetched.status == "unreachable":
                await self.redis.set(failed, "1", px=int(UNREACHABLE_REMEMBER_S * 1000))
                return found or fetched
            keep_ms = int((self.ttl_s + STALE_KEEP_S) * 1000)
            await self.redis.set(cache_key(robots), fetched.dumps(), px=keep_ms)
            return fetched
        finally:
            with contextlib.suppress(LockError):  # it expired: someone else may hold it now
                await lock.release()

    async def _from_peer(self, robots: str, stale: RobotsFile | None) -> RobotsFile:
        # Another worker is fetching this file: wait a little for its copy.
        deadline = time.monotonic() + PEER_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(PEER_POLL_S)
            found = await self._load(robots)
            if found is not None and self._fresh(found):
                return found
        if stale is not None:
            return stale
        raise Deferred(PENDING_DEFER_S, "robots_pending")


class CachedRobots:
    """robots.txt as the shared cache holds it, for judging many links at once (nothing is
    fetched here; one read per origin). A crawl skips the links it disallows without making a
    job of them."""

    def __init__(self, redis: Redis, user_agent: str) -> None:
        self.redis = redis
        self.user_agent = user_agent
        self._parsers: dict[str, Protego | None] = {}

    async def _parser_for(self, robots: str) -> Protego | None:
        if robots not in self._parsers:
            raw = await self.redis.get(cache_key(robots))
            found = RobotsFile.loads(raw) if raw else None
            rules = found is not None and found.status == "rules"
            self._parsers[robots] = await _parser(found.body) if found and rules else None
        return self._parsers[robots]

    async def disallows(self, url: str) -> bool:
        """Whether the cached robots.txt of `url`'s origin (if any) disallows it."""
        robots = robots_url(url)
        parser = await self._parser_for(robots) if robots else None
        return parser is not None and not parser.can_fetch(url, self.user_agent)


async def check_robots(cache: RobotsCache, url: str, user_agent: str) -> float | None:
    """Raise unless robots.txt lets `user_agent` fetch `url`; return its Crawl-delay (s).

    JobError `robots_disallowed` (permanent) or `robots_unavailable` (retryable); Deferred
    while another worker fetches the file.
    """
    robots = robots_url(url)
    if robots is None:
        return None
    found = await cache.get(robots, user_agent)
    details = {"robots_url": robots, "user_agent": user_agent}
    if found.status == "unreachable":
        raise JobError(
            JobErrorCode.ROBOTS_UNAVAILABLE,
            "robots.txt could not be fetched (server error or unreachable); retrying later.",
            retryable=True,
            retry_after_s=UNREACHABLE_REMEMBER_S,
            details=details,
        )
    if found.status == "allow_all":
        return None
    parser = await _parser(found.body)
    if not parser.can_fetch(url, user_agent):
        raise JobError(
            JobErrorCode.ROBOTS_DISALLOWED,
            "robots.txt disallows this URL for the agent's user agent.",
            retryable=False,
            details=details,
        )
    delay = parser.crawl_delay(user_agent)
    return min(delay, MAX_CRAWL_DELAY_S) if delay and delay > 0 else None

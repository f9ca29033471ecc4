"""Which of an agent's proxies a job's attempt goes through, and which are benched.

Shared by every worker through Redis, whose keys name a proxy by a hash (shared/proxies.py
`proxy_id`: the agent, the URL and the secret's NAME), never its URL or credentials:
- `outrider:proxy:bench:<id>`: set for OUTRIDER_PROXY_BENCH_S when the proxy fails. Benched
  proxies are skipped.
- `outrider:proxy:rr:<agent>`: the round-robin counter (`round_robin`, and `sticky_host`'s
  first pick for a host).
- `outrider:proxy:sticky:<agent>:<sha256(host)>`: the proxy id a host is served by
  (`sticky_host`), kept while it works (dropped when it is benched), for a day after its last use.
An attempt tries the unbenched proxies in rotation order (`ProxyPicker.through`) until one
serves it. Who is to blame when a proxy fails:
- The proxy, at once (benched): it could not be reached (or its TLS failed), refused our
  credentials (407, or 401), answered CONNECT with something that is not HTTP, or a SOCKS5
  reply that is about itself (no such command or address type, an auth method we did not offer).
- Nobody yet: it answered CONNECT with a 5xx, or SOCKS5 "unreachable", "refused", "TTL
  expired" or "general failure", or did not answer in time. Proxies say that when THEY cannot
  reach the target (tinyproxy 500, Squid 503/504, others 502; silence while the target drops
  packets), which is the target's failure as often as the proxy's. Such
  a proxy is benched only when another proxy of the agent then reaches that same target in the
  same attempt (the target answered through it: a result, or an HTTP status error); if none
  does, nobody is benched and the job fails `connection_error` (retryable), as it would
  without a proxy. So a dead site benches no proxy, and a proxy that answers 5xx to everything
  is benched as soon as another proxy shows the target is up (with one proxy, it never is: its
  jobs fail `connection_error`).
When no proxy is left (each benched, or blamed) the job fails `proxy_unavailable` (retryable,
after the earliest bench ends). Without Redis (it is down) the proxies are tried in order and
nothing is benched.
"""

from __future__ import annotations

import hashlib
import random
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import RedisError
from yarl import URL

from shared.job_errors import JobErrorCode
from shared.logging import describe, get_logger
from shared.models import Agent
from shared.proxies import parse_proxy_url, proxy_id
from worker.proxy_tunnel import ProxyFailed, ProxyRoute, authority, proxy_tls
from worker.retry import JobError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = get_logger(__name__)

STICKY_KEEP_S = 86400
ROUND_ROBIN_KEEP_S = 86400
T = TypeVar("T")


def bench_key(route: ProxyRoute) -> str:
    return f"outrider:proxy:bench:{route.id}"


def _tls(ca_file: Path | None) -> ssl.SSLContext:
    try:
        return proxy_tls(str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise JobError(
            JobErrorCode.INTERNAL_ERROR,
            f"OUTRIDER_PROXY_CA_FILE cannot be read as PEM certificates: {exc}",
            retryable=True,
        ) from None


def agent_routes(
    agent: Agent, secrets: dict[str, str], ca_file: Path | None = None
) -> list[ProxyRoute]:
    """The agent's proxies with their credentials (from its secrets, for this attempt only),
    `https://` ones with the TLS context that trusts `ca_file`'s CAs too (OUTRIDER_PROXY_CA_FILE).
    A proxy whose secret is gone fails the job `secret_not_found` (it is never sent bare)."""
    routes = []
    for proxy in agent.proxies or []:
        address = parse_proxy_url(str(proxy["url"]))
        tls = _tls(ca_file) if address.scheme == "https" else None
        secret = proxy.get("auth_secret")
        credentials = None
        if secret:
            credentials = secrets.get(secret)
            if credentials is None:
                raise JobError(
                    JobErrorCode.SECRET_NOT_FOUND,
                    f"The agent has no secret named {secret!r} (a proxy's `auth_secret`).",
                    retryable=False,
                )
        routes.append(
            ProxyRoute(address, proxy_id(agent.id, address.url, secret), credentials, tls)
        )
    return routes


class ProxyPicker:
    """One attempt's choice among an agent's proxies (see the module's docstring)."""

    def __init__(
        self,
        redis: Redis | None,
        agent: Agent,
        routes: list[ProxyRoute],
        host: str | None,
        bench_s: float,
        target: str | None = None,
    ) -> None:
        self.redis = redis
        self.agent = agent
        self.routes = routes
        self.host = host
        self.target = target  # the job's `host:port` (proxy_tunnel.authority), if known
        self.bench_s = bench_s
        self.benched: list[ProxyRoute] = []

    async def through(self, run: Callable[[ProxyRoute], Awaitable[T]]) -> tuple[ProxyRoute, T]:
        """`run(route)` through each usable proxy in turn until one serves the attempt: that
        proxy and what `run` returned. Blames and benches failing proxies as the module's
        docstring says; raises `connection_error` when no proxy could reach the target, else
        `proxy_unavailable` when none is left. Whatever else `run` raises ends the attempt."""
        suspects: list[tuple[ProxyRoute, ProxyFailed]] = []
        for route in await self.order():
            try:
                result = await run(route)
            except ProxyFailed as failure:
                if failure.target is None:
                    await self.bench(route, failure)
                else:  # its fault or the target's: the next proxy will tell
                    suspects.append((route, failure))
                continue
            except JobError as error:
                if error.code.startswith("http_"):  # the target answered, through `route`
                    await self._convict(suspects, route)
                raise
            await self._convict(suspects, route)
            await self.worked(route)
            return route, result
        if suspects:
            raise self._unreached(suspects)
        raise await self.unavailable()

    async def _convict(
        self, suspects: list[tuple[ProxyRoute, ProxyFailed]], reached_by: ProxyRoute
    ) -> None:
        """`reached_by` reached the job's target: the proxies that said they could not were
        at fault."""
        for route, failure in suspects:
            if failure.target == self.target:
                log.info("proxy.blamed", proxy=route.url, reached_by=reached_by.url)
                await self.bench(route, failure)

    def _unreached(self, suspects: list[tuple[ProxyRoute, ProxyFailed]]) -> JobError:
        """No proxy reached the target and some said they could not: the target's failure."""
        targets = sorted({failure.target or "" for _, failure in suspects})
        log.info("proxy.target_unreachable", targets=targets, proxies=len(suspects))
        reasons = "; ".join(failure.reason for _, failure in suspects)
        return JobError(
            JobErrorCode.CONNECTION_ERROR,
            f"No proxy could reach {', '.join(targets)} ({reasons}).",
            retryable=True,
            details={"proxies": len(self.routes), "unreached": targets},
        )

    def _sticky_key(self) -> str | None:
        if self.agent.proxy_rotation != "sticky_host" or not self.host:
            return None
        digest = hashlib.sha256(self.host.lower().encode()).hexdigest()[:32]
        return f"outrider:proxy:sticky:{self.agent.id}:{digest}"

    async def order(self) -> list[ProxyRoute]:
        """The unbenched proxies, in the order this attempt tries them; JobError
        `proxy_unavailable` when every one is benched."""
        routes = list(self.routes)
        if self.redis is None:
            return routes
        try:
            return await self._order(routes)
        except RedisError as exc:
            log.warning("proxy.redis_unavailable", error=describe(exc))
            return routes

    async def _order(self, routes: list[ProxyRoute]) -> list[ProxyRoute]:
        assert self.redis is not None
        rotation = self.agent.proxy_rotation or "round_robin"
        sticky_key = self._sticky_key()
        if rotation == "random":
            random.shuffle(routes)
        else:
            counter = f"outrider:proxy:rr:{self.agent.id}"
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, ROUND_ROBIN_KEEP_S)
                turn, _ = await pipe.execute()
            start = (int(turn) - 1) % len(routes)
            routes = routes[start:] + routes[:start]
        if sticky_key is not None:
            stuck = await self.redis.get(sticky_key)
            stuck_id = stuck.decode() if isinstance(stuck, bytes) else stuck
            routes.sort(key=lambda route: route.id != stuck_id)  # stable: the rest keep turns
        benched = await self.redis.mget([bench_key(route) for route in routes])
        usable = [route for route, bench in zip(routes, benched, strict=True) if bench is None]
        if not usable:
            raise await self.unavailable()
        return usable

    async def unavailable(self) -> JobError:
        """The error when no proxy is left: retried once the earliest bench ends."""
        retry_after_s = self.bench_s
        if self.redis is not None:
            try:
                ttls = [await self.redis.pttl(bench_key(route)) for route in self.routes]
                left = [ttl / 1000 for ttl in ttls if ttl and ttl > 0]
                retry_after_s = min(left, default=self.bench_s)
            except RedisError:
                pass
        return JobError(
            JobErrorCode.PROXY_UNAVAILABLE,
            f"Every proxy of the agent ({len(self.routes)}) failed or is benched.",
            retryable=True,
            retry_after_s=retry_after_s,
            details={"proxies": len(self.routes)},
        )

    async def bench(self, route: ProxyRoute, failure: ProxyFailed) -> None:
        """Keep every worker off `route` for OUTRIDER_PROXY_BENCH_S."""
        self.benched.append(route)
        log.warning("proxy.benched", proxy=route.url, reason=failure.reason, bench_s=self.bench_s)
        if self.redis is None:
            return
        try:
            await self.redis.set(bench_key(route), "1", px=max(int(self.bench_s * 1000), 1))
            sticky_key = self._sticky_key()
            if sticky_key is not None:
                stuck = await self.redis.get(sticky_key)
                if (stuck.decode() if isinstance(stuck, bytes) else stuck) == route.id:
                    await self.redis.delete(sticky_key)
        except RedisError as exc:
            log.warning("proxy.redis_unavailable", error=describe(exc))

    async def worked(self, route: ProxyRoute) -> None:
        """`route` served the attempt: a `sticky_host` agent keeps it for the host."""
        sticky_key = self._sticky_key()
        if sticky_key is None or self.redis is None:
            return
        try:
            await self.redis.set(sticky_key, route.id, ex=STICKY_KEEP_S)
        except RedisError as exc:
            log.warning("proxy.redis_unavailable", error=describe(exc))


def target_host(job_input: dict[str, object]) -> str | None:
    """The host a job's traffic is for (`sticky_host` keeps one proxy per host)."""
    url = job_input.get("url")
    if not isinstance(url, str):
        return None
    try:
        return URL(url).host
    except ValueError:
        return None


def target_authority(job_input: dict[str, object]) -> str | None:
    """The `host:port` a job's first connection is for, as a tunnel names it."""
    url = job_input.get("url")
    if not isinstance(url, str):
        return None
    try:
        parsed = URL(url)
    except ValueError:
        return None
    if not parsed.raw_host or parsed.port is None:
        return None
    return authority(parsed.raw_host, parsed.port)

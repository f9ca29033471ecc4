"""Which of an agent's proxies a job's attempt goes through, and which are benched.

Shared by every worker through Redis, whose keys name a proxy by a hash (shared/proxies.py
`proxy_id`: the agent, the URL and the secret's NAME), never its URL or credentials:
- `outrider:proxy:bench:<id>`: set for OUTRIDER_PROXY_BENCH_S when the proxy fails (it could not
  be reached, answered 407, or a 5xx or nonsense to CONNECT). Benched proxies are skipped.
- `outrider:proxy:rr:<agent>`: the round-robin counter (`round_robin`, and `sticky_host`'s
  first pick for a host).
- `outrider:proxy:sticky:<agent>:<sha256(host)>`: the proxy id a host is served by
  (`sticky_host`), kept while it works (dropped when it is benched), for a day after its last use.
An attempt tries the unbenched proxies in rotation order, benching each that fails; when none
is left the job fails `proxy_unavailable` (retryable, after the earliest bench ends). Without
Redis (it is down) the proxies are tried in order and nothing is benched.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from yarl import URL

from shared.job_errors import JobErrorCode
from shared.logging import describe, get_logger
from shared.models import Agent
from shared.proxies import parse_proxy_url, proxy_id
from worker.proxy_tunnel import ProxyFailed, ProxyRoute
from worker.retry import JobError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = get_logger(__name__)

STICKY_KEEP_S = 86400
ROUND_ROBIN_KEEP_S = 86400


def bench_key(route: ProxyRoute) -> str:
    return f"outrider:proxy:bench:{route.id}"


def agent_routes(agent: Agent, secrets: dict[str, str]) -> list[ProxyRoute]:
    """The agent's proxies with their credentials (from its secrets, for this attempt only).
    A proxy whose secret is gone fails the job `secret_not_found` (it is never sent bare)."""
    routes = []
    for proxy in agent.proxies or []:
        address = parse_proxy_url(str(proxy["url"]))
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
        routes.append(ProxyRoute(address, proxy_id(agent.id, address.url, secret), credentials))
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
    ) -> None:
        self.redis = redis
        self.agent = agent
        self.routes = routes
        self.host = host
        self.bench_s = bench_s
        self.benched: list[ProxyRoute] = []

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

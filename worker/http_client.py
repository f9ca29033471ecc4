"""Outbound HTTP for workers: aiohttp sessions that obey the egress policy."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.tracing import Trace

from shared.egress import EgressPolicy, parse_ip_literal
from shared.errors import EgressBlocked
from worker import metrics

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10, sock_connect=10, sock_read=30)


class _NonEmptyResolver(AbstractResolver):
    """Refuses an empty answer, which aiohttp's DNS cache cannot hold (it crashes)."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        hosts = await self.inner.resolve(host, port, family)
        if not hosts:
            raise EgressBlocked(f"host {host!r} resolved to no address")
        return hosts

    async def close(self) -> None:
        await self.inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that connects only to addresses the egress policy allows."""

    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        # The connector still closes the resolver only if it made it: the wrapper delegates.
        self._resolver = _NonEmptyResolver(self._resolver)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        try:
            return await self._checked_hosts(host, port, traces)
        except EgressBlocked as exc:
            metrics.egress_blocked("connect", exc)
            raise

    async def _checked_hosts(
        self, host: str, port: int, traces: Sequence[Trace] | None
    ) -> list[ResolveResult]:
        # aiohttp rejects legacy numeric hosts (2130706433, 127.1) with its own error;
        # judge them first so every forbidden destination fails the same way.
        try:
            literal = parse_ip_literal(host)
        except ValueError:
            literal = None  # not a usable address: what it resolves to is checked below
        if literal is not None:
            self.policy.check_ip(literal, port)
        hosts = await super()._resolve_host(host, port, traces=traces)
        if not hosts:
            raise EgressBlocked(f"host {host!r} resolved to no address")
        # All answers, not just the first: happy eyeballs may try any of them.
        for resolved in hosts:
            self.policy.check_ip(resolved["host"], resolved["port"])
        return hosts

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> ResponseHandler:
        # A proxy would receive the real destination in the request, out of our sight.
        if req.proxy is not None:
            blocked = EgressBlocked("requests through a proxy are not allowed")
            metrics.egress_blocked("connect", blocked)
            raise blocked
        return await super()._create_connection(req, traces, timeout)


def egress_middleware(policy: EgressPolicy) -> aiohttp.ClientMiddlewareType:
    """A client middleware that runs `policy.check_url` on each request and redirect hop."""

    async def check_egress(
        req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        try:
            policy.check_url(str(req.url))
        except EgressBlocked as exc:
            metrics.egress_blocked("url", exc)
            raise
        return await handler(req)

    return check_egress


def create_session(
    policy: EgressPolicy,
    *,
    limit: int = 100,
    limit_per_host: int = 10,
    user_agent: str = "Outrider/0.1",
    resolver: AbstractResolver | None = None,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
) -> aiohttp.ClientSession:
    """A ClientSession whose every request obeys `policy`; call it inside a running loop.

    The policy is enforced twice: a client middleware runs `policy.check_url` on every
    request, including each redirect hop aiohttp follows, and `GuardedConnector` runs
    `policy.check_ip` on every resolved address right before connecting (DNS rebinding
    cannot slip through). Both raise EgressBlocked out of `session.request(...)`, unwrapped.
    `middlewares=()` on a request drops the URL check only; the connector always applies.
    Proxy environment variables are ignored (trust_env=False) and cookies are never
    stored, so one job's cookies cannot leak into another's. Responses are decompressed:
    callers must cap how much they read. Redirects may be left to aiohttp (each hop is
    checked) or followed by hand (the engines do, to apply their own rules per hop).
    """
    connector = GuardedConnector(
        policy, limit=limit, limit_per_host=limit_per_host, resolver=resolver
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=True,
        timeout=timeout,
        headers={"User-Agent": user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        middlewares=(egress_middleware(policy),),
    )

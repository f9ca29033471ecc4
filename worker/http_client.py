"""Outbound HTTP for workers: aiohttp sessions that obey the egress policy, one per owner."""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.tracing import Trace

from shared.egress import EgressPolicy, parse_ip_literal
from shared.errors import EgressBlocked
from worker import counters
from worker.bodies import ACCEPT_ENCODING
from worker.proxy_tunnel import ProxyRoute, TunnelRefused, open_tunnel

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10, sock_connect=10, sock_read=30)
DEFAULT_USER_AGENT = "Outrider/0.1"


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


class _OneAnswerHandler(ResponseHandler):
    """A connection that never keeps bytes nobody asked for.

    aiohttp parses whatever arrives on a kept-alive connection, also while it waits in the
    pool, and hands it to the next request on it as its answer: a server that sends a second
    response behind the first (late, or in the same packet) shifts every later answer on that
    connection by one, each returned as a success. Here a byte that arrives while no request
    is outstanding (the connection was released to the pool) closes the connection instead,
    and so does an answer whose end came with more bytes behind it. (An unasked answer that
    lands after the next request went out cannot be told from that request's answer, by any
    HTTP/1.1 client: such a server confuses only its own answers to one owner's requests, as
    pools are per owner.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.idle = False  # released to the pool: nothing may arrive now

    def set_response_params(self, **params: Any) -> None:
        self.idle = False  # a request goes out on this connection
        super().set_response_params(**params)

    def data_received(self, data: bytes) -> None:
        if self.idle and data:  # (aiohttp calls it with b"" itself when it resumes reading)
            self._refuse()
            return
        super().data_received(data)
        if self.idle and self.should_close:  # released during this call, more buffered
            self._refuse()

    def _refuse(self) -> None:
        self.force_close()
        self.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that connects only to addresses the egress policy allows, and drops a
    pooled connection on which the server sent anything unasked (_OneAnswerHandler)."""

    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        # The connector still closes the resolver only if it made it: the wrapper delegates.
        self._resolver = _NonEmptyResolver(self._resolver)
        # (aiohttp types the factory `partial[ResponseHandler]`, and partials are invariant)
        self._factory = functools.partial(_OneAnswerHandler, loop=self._loop)  # type: ignore[assignment]

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        if isinstance(protocol, _OneAnswerHandler):
            protocol.idle = True  # its answer is read: from now on nothing may arrive
        super()._release(key, protocol, should_close=should_close)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        try:
            return await self._checked_hosts(host, port, traces)
        except EgressBlocked as exc:
            counters.egress_blocked("connect", exc)
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
            counters.egress_blocked("connect", blocked)
            raise blocked
        return await super()._create_connection(req, traces, timeout)


class ProxiedConnector(GuardedConnector):
    """A GuardedConnector whose every connection is a tunnel through one upstream proxy.

    The target's name is resolved and every address checked, as for a direct connection,
    before the proxy is asked; the proxy's own addresses are checked too (operators allow an
    internal proxy with OUTRIDER_EGRESS_ALLOW_CIDRS). Then CONNECT (or SOCKS5) to the target,
    and TLS inside the tunnel for https targets (worker/proxy_tunnel.py). A proxy's failure
    raises ProxyFailed out of `session.request(...)`, unwrapped.
    """

    def __init__(self, policy: EgressPolicy, route: ProxyRoute, **kwargs: Any) -> None:
        super().__init__(policy, **kwargs)
        self.route = route

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> ResponseHandler:
        if req.proxy is not None:  # one proxy per session, ours
            blocked = EgressBlocked("requests through a proxy are not allowed")
            counters.egress_blocked("connect", blocked)
            raise blocked
        host, port = req.url.raw_host or "", req.port or 0
        targets = [r["host"] for r in await self._resolve_host(host, port, traces)]
        address = self.route.address
        proxies = [r["host"] for r in await self._resolve_host(address.host, address.port)]
        connect_s = min(timeout.sock_connect or timeout.connect or timeout.total or 30.0, 10.0)
        try:
            transport, early = await open_tunnel(
                self.route, proxies, host, port, targets, connect_s
            )
        except TunnelRefused as exc:
            refused = ConnectionRefusedError(errno.ECONNREFUSED, str(exc))
            raise aiohttp.ClientConnectorError(req.connection_key, refused) from None
        proto = self._factory()
        sslcontext = self._get_ssl_context(req)
        if sslcontext is None:
            transport.set_protocol(proto)
            proto.connection_made(transport)
        else:
            try:
                async with asyncio.timeout(connect_s):
                    tls = await self._loop.start_tls(
                        transport,
                        proto,
                        sslcontext,
                        server_hostname=req.server_hostname or req.host,
                    )
            except BaseException:
                transport.abort()
                raise
            if tls is None:  # pragma: no cover - the transport closed under the handshake
                raise aiohttp.ClientConnectorError(req.connection_key, ConnectionResetError())
            proto.connection_made(tls)
        if early:  # pragma: no cover - a proxy that sent the target's bytes with its answer
            proto.data_received(early)
        return proto


def egress_middleware(policy: EgressPolicy) -> aiohttp.ClientMiddlewareType:
    """A client middleware that runs `policy.check_url` on each request and redirect hop."""

    async def check_egress(
        req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        try:
            policy.check_url(str(req.url))
        except EgressBlocked as exc:
            counters.egress_blocked("url", exc)
            raise
        return await handler(req)

    return check_egress


def create_session(
    policy: EgressPolicy,
    *,
    limit: int = 100,
    limit_per_host: int = 10,
    user_agent: str = DEFAULT_USER_AGENT,
    resolver: AbstractResolver | None = None,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    proxy: ProxyRoute | None = None,
) -> aiohttp.ClientSession:
    """A ClientSession whose every request obeys `policy`; call it inside a running loop.

    The policy is enforced twice: a client middleware runs `policy.check_url` on every
    request, including each redirect hop aiohttp follows, and `GuardedConnector` runs
    `policy.check_ip` on every resolved address right before connecting (DNS rebinding
    cannot slip through). Both raise EgressBlocked out of `session.request(...)`, unwrapped.
    `middlewares=()` on a request drops the URL check only; the connector always applies.
    Proxy environment variables are ignored (trust_env=False) and cookies are never
    stored, so one job's cookies cannot leak into another's. Bodies come as sent (no
    auto_decompress): worker/bodies.py's read_capped decodes and caps them. Redirects may be
    left to aiohttp (each hop is checked) or followed by hand (the engines do, to apply their
    own rules per hop).
    With `proxy`, every connection is a tunnel through that upstream proxy (ProxiedConnector).
    """
    connector = (
        GuardedConnector(policy, limit=limit, limit_per_host=limit_per_host, resolver=resolver)
        if proxy is None
        else ProxiedConnector(
            policy, proxy, limit=limit, limit_per_host=limit_per_host, resolver=resolver
        )
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=False,  # worker/bodies.py undoes the coding, whole or not at all
        timeout=timeout,
        headers={"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        cookie_jar=aiohttp.DummyCookieJar(),
        middlewares=(egress_middleware(policy),),
    )


_PoolKey = tuple[uuid.UUID, tuple[str, str] | None]  # the owner, and the proxy if any


@dataclass(eq=False)
class _Pooled:
    """One owner's session, how many callers hold it, and since when nobody does."""

    session: aiohttp.ClientSession
    leases: int = 0
    idle_since: float = 0.0  # the event loop's time of the last release
    retired: bool = False  # evicted while held: closes when the last holder lets go


class _Lease:
    """`async with sessions.lease(owner)`: a class, not a generator, as it runs for every job."""

    __slots__ = ("_owner_id", "_pooled", "_proxy", "_sessions")

    def __init__(
        self, sessions: OwnerSessions, owner_id: uuid.UUID, proxy: ProxyRoute | None
    ) -> None:
        self._sessions = sessions
        self._owner_id = owner_id
        self._proxy = proxy
        self._pooled: _Pooled | None = None

    async def __aenter__(self) -> aiohttp.ClientSession:
        self._pooled = self._sessions._checkout(self._owner_id, self._proxy)
        return self._pooled.session

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pooled is not None:
            self._sessions._checkin(self._pooled)
            self._pooled = None


class OwnerSessions:
    """A tenant wall for outbound HTTP: one session, so one connection pool, per owner.

    No connection ever carries two owners' requests, so no framing bug (a smuggled request,
    a response left in a kept-alive socket) can hand one owner's answer, or the credentials
    it echoes, to another. A proxied job gets a session of its own per owner AND proxy (and
    credentials): its tunnels are never shared with direct requests or another proxy's.
    Sessions are made on demand by `factory(proxy)` (each with its own egress-guarded
    connector), kept for at most `max_owners` owners and proxies (least recently used first
    out; one still in use closes when its last request ends) and closed once unused for
    `idle_s` (one timer sweeps them all, so a lease costs no timer). One owner, the common
    case, keeps one warm session.
    """

    def __init__(
        self,
        factory: Callable[[ProxyRoute | None], aiohttp.ClientSession],
        *,
        max_owners: int,
        idle_s: float,
    ) -> None:
        if max_owners < 1:
            raise ValueError("max_owners must be at least 1")
        self.factory = factory
        self.max_owners = max_owners
        self.idle_s = idle_s
        self._pools: OrderedDict[_PoolKey, _Pooled] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self.created = 0  # sessions made so far (tests and diagnostics)

    def __len__(self) -> int:
        return len(self._pools)

    def lease(self, owner_id: uuid.UUID, proxy: ProxyRoute | None = None) -> _Lease:
        """`async with` it: the owner's session (through `proxy`, if given), kept open until
        the block ends."""
        return _Lease(self, owner_id, proxy)

    def _checkout(self, owner_id: uuid.UUID, proxy: ProxyRoute | None = None) -> _Pooled:
        if self._closed:
            raise RuntimeError("the worker's HTTP sessions are closed")
        key = (owner_id, None if proxy is None else proxy.pool_key)
        pooled = self._pools.get(key)
        if pooled is None:
            pooled = self._pools[key] = _Pooled(self.factory(proxy))
            self.created += 1
            self._evict()
        else:
            self._pools.move_to_end(key)
        pooled.leases += 1
        return pooled

    def _checkin(self, pooled: _Pooled) -> None:
        pooled.leases -= 1
        if pooled.leases > 0:
            return
        if pooled.retired:
            self._close_later(pooled)
            return
        loop = asyncio.get_running_loop()
        pooled.idle_since = loop.time()
        if self._sweeper is None and not self._closed:
            self._sweeper = loop.call_later(self.idle_s, self._sweep)

    def _sweep(self) -> None:
        """Close the sessions idle for `idle_s`; come back when the next one will be."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now, next_due = loop.time(), None
        for owner_id, pooled in list(self._pools.items()):
            if pooled.leases > 0:
                continue  # its release starts the sweeper again
            due = pooled.idle_since + self.idle_s
            if due <= now:
                del self._pools[owner_id]
                self._close_later(pooled)
            else:
                next_due = due if next_due is None else min(next_due, due)
        if next_due is not None:
            self._sweeper = loop.call_later(next_due - now, self._sweep)

    def _evict(self) -> None:
        while len(self._pools) > self.max_owners:
            _, victim = self._pools.popitem(last=False)
            if victim.leases > 0:
                victim.retired = True
            else:
                self._close_later(victim)

    def _close_later(self, pooled: _Pooled) -> None:
        task = asyncio.get_running_loop().create_task(pooled.session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every session (in use or not), and wait for those already closing."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._pools:
            _, pooled = self._pools.popitem()
            self._close_later(pooled)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

"""Tests of the guarded aiohttp session against a canary server on loopback only."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.egress import EgressPolicy
from shared.errors import EgressBlocked
from tests.worker.support import eventually
from worker.http_client import GuardedConnector, OwnerSessions, create_session

DEFAULT = EgressPolicy()
OPEN = EgressPolicy(allow_cidrs=["127.0.0.0/8", "::1/128"], allowed_ports=["1-65535"])


@dataclass
class Canary:
    """A server that counts every request it receives; one site per loopback family."""

    port4: int
    port6: int | None
    hits: list[str] = field(default_factory=list)


class StaticResolver(AbstractResolver):
    """A fake DNS: fixed answers, so no test ever asks a real resolver about a public name."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        return [
            {
                "hostname": host,
                "host": addr,
                "port": port,
                "family": socket.AF_INET6 if ":" in addr else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for addr in self.answers[host]
        ]

    async def close(self) -> None:
        return None


def _bind(family: socket.AddressFamily, host: str) -> socket.socket | None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, 0))
    except OSError:
        sock.close()
        return None
    return sock


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state.hits.append(str(request.rel_url))
        if "to" in request.query:
            raise web.HTTPFound(request.query["to"])
        return web.Response(text="canary")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock4 = _bind(socket.AF_INET, "127.0.0.1")
    assert sock4 is not None
    sock6 = _bind(socket.AF_INET6, "::1")
    for sock in (sock4, sock6):
        if sock is not None:
            await web.SockSite(runner, sock).start()
    state = Canary(sock4.getsockname()[1], sock6.getsockname()[1] if sock6 else None)
    try:
        yield state
    finally:
        await runner.cleanup()


def _urls(canary: Canary) -> list[str]:
    p = canary.port4
    urls = [
        f"http://127.0.0.1:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",
        f"http://[::ffff:7f00:1]:{p}/",
        f"http://2130706433:{p}/",
        f"http://0x7f000001:{p}/",
        f"http://0x7f.0.0.1:{p}/",
        f"http://0177.0.0.1:{p}/",
        f"http://127.1:{p}/",
        f"http://127.0.0.1.:{p}/",
    ]
    if canary.port6 is not None:
        urls.append(f"http://[::1]:{canary.port6}/")
    return urls


async def test_connect_time_guard_blocks_every_loopback_spelling(canary: Canary) -> None:
    async with create_session(DEFAULT, resolver=StaticResolver({})) as session:
        for url in _urls(canary):
            # middlewares=() skips the URL check: the connector alone must refuse.
            with pytest.raises(EgressBlocked) as exc_info:
                await session.get(url, middlewares=())
            assert type(exc_info.value) is EgressBlocked, url
            assert exc_info.value.code == "blocked_destination", url
    assert canary.hits == []


async def test_localhost_through_the_system_resolver(canary: Canary) -> None:
    # The real resolver answers localhost from /etc/hosts, never the network.
    async with create_session(DEFAULT, resolver=aiohttp.ThreadedResolver()) as session:
        with pytest.raises(EgressBlocked):
            await session.get(f"http://localhost:{canary.port4}/", middlewares=())
        with pytest.raises(EgressBlocked):
            await session.get(f"http://localhost:{canary.port4}/")
    assert canary.hits == []


async def test_url_check_blocks_too(canary: Canary) -> None:
    async with create_session(DEFAULT) as session:
        for url in _urls(canary):
            with pytest.raises(EgressBlocked):
                await session.get(url)
    assert canary.hits == []


async def test_dns_rebinding_is_blocked_at_connect(canary: Canary) -> None:
    policy = EgressPolicy(allowed_ports=["1-65535"])
    url = f"http://rebind.example:{canary.port4}/"
    assert policy.check_url(url) == url  # the submit-time check cannot see the answer
    resolver = StaticResolver({"rebind.example": ["127.0.0.1"]})
    async with create_session(policy, resolver=resolver) as session:
        with pytest.raises(EgressBlocked, match="loopback") as exc_info:
            await session.get(url)
    assert exc_info.value.code == "blocked_destination"
    assert resolver.calls == ["rebind.example"]
    assert canary.hits == []


async def test_any_forbidden_answer_blocks(canary: Canary) -> None:
    policy = EgressPolicy(allow_cidrs=["127.0.0.1/32"], allowed_ports=["1-65535"])
    resolver = StaticResolver({"mixed.test": ["127.0.0.1", "127.0.0.2"], "none.test": []})
    async with create_session(policy, resolver=resolver) as session:
        with pytest.raises(EgressBlocked, match=r"127\.0\.0\.2"):
            await session.get(f"http://mixed.test:{canary.port4}/")
        with pytest.raises(EgressBlocked, match="no address"):
            await session.get(f"http://none.test:{canary.port4}/")
    assert canary.hits == []


async def test_allowed_range_reaches_the_canary(canary: Canary) -> None:
    resolver = StaticResolver({"canary.test": ["127.0.0.1"]})
    async with create_session(OPEN, resolver=resolver) as session:
        urls = [f"http://127.0.0.1:{canary.port4}/a", f"http://canary.test:{canary.port4}/b"]
        if canary.port6 is not None:
            urls.append(f"http://[::1]:{canary.port6}/c")
        for url in urls:
            async with session.get(url) as resp:
                assert resp.status == 200
                assert await resp.text() == "canary"
    assert canary.hits == ["/a", "/b", "/c"][: len(urls)]


async def test_proxies_are_refused(canary: Canary) -> None:
    async with create_session(OPEN) as session:
        with pytest.raises(EgressBlocked, match="proxy"):
            await session.get(
                f"http://127.0.0.1:{canary.port4}/", proxy=f"http://127.0.0.1:{canary.port4}"
            )
    assert canary.hits == []


async def test_redirect_hops_are_checked(canary: Canary) -> None:
    # Loopback is open on any port, but names must use allowed_ports: only the URL check
    # (run on the redirect hop) refuses canary.test on the canary's port.
    policy = EgressPolicy(allow_cidrs=["127.0.0.0/8"])
    resolver = StaticResolver({"canary.test": ["127.0.0.1"]})
    base = f"http://127.0.0.1:{canary.port4}"
    hops = {
        f"http://canary.test:{canary.port4}/": "invalid_url",
        "http://169.254.169.254/latest/meta-data/": "blocked_destination",
        f"http://[::ffff:10.0.0.1]:{canary.port4}/": "blocked_destination",
    }
    async with create_session(policy, resolver=resolver) as session:
        for target, code in hops.items():
            with pytest.raises(EgressBlocked) as exc_info:
                await session.get(f"{base}/r", params={"to": target})
            assert exc_info.value.code == code
    assert len(canary.hits) == len(hops)
    assert resolver.calls == []


async def test_session_settings() -> None:
    async with create_session(DEFAULT, limit=7, limit_per_host=3, user_agent="UA/1") as session:
        assert isinstance(session.connector, GuardedConnector)
        assert session.connector.limit == 7
        assert session.connector.limit_per_host == 3
        assert session.trust_env is False
        assert session.auto_decompress is False  # worker/bodies.py decodes, whole or not at all
        assert session.headers["Accept-Encoding"] == "gzip, deflate, br"
        assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
        assert session.headers["User-Agent"] == "UA/1"
        assert session.timeout.total == 30


def _owner_sessions(max_owners: int = 8, idle_s: float = 60.0) -> OwnerSessions:
    return OwnerSessions(lambda _proxy: create_session(OPEN), max_owners=max_owners, idle_s=idle_s)


async def test_each_owner_has_its_own_guarded_pool() -> None:
    sessions = _owner_sessions()
    a, b = uuid.uuid4(), uuid.uuid4()
    try:
        async with sessions.lease(a) as first, sessions.lease(b) as other:
            async with sessions.lease(a) as again:
                assert again is first, "one owner keeps one session"
            assert other is not first
            assert other.connector is not first.connector
            for session in (first, other):
                assert isinstance(session.connector, GuardedConnector)
                assert session.connector.policy is OPEN
                assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
        assert (len(sessions), sessions.created) == (2, 2)
    finally:
        await sessions.close()
    assert first.closed
    assert other.closed


async def test_a_guarded_pool_per_owner_still_refuses_internal_addresses(canary: Canary) -> None:
    sessions = OwnerSessions(lambda _proxy: create_session(DEFAULT), max_owners=4, idle_s=60)
    try:
        for _ in range(2):
            async with sessions.lease(uuid.uuid4()) as session:
                with pytest.raises(EgressBlocked):
                    await session.get(f"http://127.0.0.1:{canary.port4}/", middlewares=())
    finally:
        await sessions.close()
    assert canary.hits == []


async def test_least_recently_used_owner_is_closed_past_the_bound() -> None:
    sessions = _owner_sessions(max_owners=2)
    owners = [uuid.uuid4() for _ in range(3)]
    made: list[aiohttp.ClientSession] = []
    try:
        for owner in owners[:2]:
            async with sessions.lease(owner) as session:
                made.append(session)
        async with sessions.lease(owners[0]):  # owner 0 is now the most recent
            pass
        async with sessions.lease(owners[2]) as session:
            made.append(session)
        await eventually(lambda: _true(made[1].closed), 5, "owner 1's session closed")
        assert not made[0].closed
        assert not made[2].closed
        assert len(sessions) == 2
        async with sessions.lease(owners[1]) as fresh:  # back: a new session
            assert fresh is not made[1]
            assert not fresh.closed
        assert sessions.created == 4
    finally:
        await sessions.close()


async def test_an_evicted_session_in_use_closes_when_its_request_ends() -> None:
    sessions = _owner_sessions(max_owners=1)
    busy, other = uuid.uuid4(), uuid.uuid4()
    try:
        async with sessions.lease(busy) as held:
            async with sessions.lease(other):
                pass
            assert len(sessions) == 1
            await asyncio.sleep(0.05)
            assert not held.closed, "closed under a running request"
        await eventually(lambda: _true(held.closed), 5, "the retired session closed")
    finally:
        await sessions.close()


async def test_an_idle_session_closes_and_a_held_one_does_not() -> None:
    sessions = _owner_sessions(idle_s=0.05)
    owner = uuid.uuid4()
    try:
        async with sessions.lease(owner) as held:
            await asyncio.sleep(0.2)
            assert not held.closed
        await eventually(lambda: _true(held.closed), 5, "the idle session closed")
        assert len(sessions) == 0
        async with sessions.lease(owner) as fresh:
            assert not fresh.closed
    finally:
        await sessions.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with sessions.lease(owner):
            pass


async def _true(value: bool) -> bool:
    return value

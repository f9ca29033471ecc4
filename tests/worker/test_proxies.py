"""Jobs through an agent's proxies, with real forward proxies on loopback (tinyproxy, microsocks).

Each proxy connects out from a loopback address of its own (127.0.0.2, .3, .4), so the target
sees who its client was; the worker itself would come from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from redis.asyncio import Redis

from shared.egress import EgressPolicy
from shared.proxies import parse_proxy_url, proxy_id
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import TargetServer, wait_for_job
from tests.worker.proxy_servers import (
    MICROSOCKS,
    TINYPROXY,
    RecordingSite,
    RunningProxy,
    microsocks,
    private_ca,
    recording_site,
    tinyproxy,
    tls_front,
)
from tests.worker.support import closed_port, submit
from tests.worker.test_secrets import redis_dump
from worker.http_client import OwnerSessions, ProxiedConnector, create_session
from worker.proxy_tunnel import ProxyRoute

pytestmark = pytest.mark.skipif(
    TINYPROXY is None or MICROSOCKS is None,
    reason="needs tinyproxy and microsocks (make install, as root)",
)

# Workers that may reach 127.0.0.1 only: 127.0.0.2 (a proxy's way out) is forbidden to them.
WORKER = {"egress_allow_cidrs": ["127.0.0.1/32"], "egress_allowed_ports": ["1-65535"]}
UNLIMITED = {"host_rate_per_s": 0}
SOURCE_A, SOURCE_B, SOURCE_SOCKS, SOURCE_TLS = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


def password() -> str:
    return f"pw-{uuid.uuid4().hex}"


async def make_agent(client: httpx.AsyncClient, auth: dict[str, str], **profile: Any) -> str:
    body = {"name": f"agent-{uuid.uuid4().hex[:8]}", **profile}
    response = await client.post("/v1/agents", json=body, headers=auth)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def run_jobs(
    client: httpx.AsyncClient, auth: dict[str, str], specs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    ids = [await submit(client, auth, spec) for spec in specs]
    return [await wait_for_job(client, auth, job_id, timeout_s=60) for job_id in ids]


def proxy_of(job: dict[str, Any]) -> str:
    assert job["status"] == "succeeded", job
    name: str = job["result"]["metadata"]["proxy"]
    return name


@contextlib.asynccontextmanager
async def workers(run_worker: RunWorker, **overrides: Any) -> AsyncIterator[None]:
    """A default worker (http, fetch) and a browser worker (render, scrape)."""
    settings = {**WORKER, **UNLIMITED, **overrides}
    async with run_worker(**settings), run_worker(queue="browser", concurrency=4, **settings):
        yield


async def bench_keys(redis_url: str) -> list[str]:
    redis = Redis.from_url(redis_url)
    try:
        return [k.decode() async for k in redis.scan_iter(match="outrider:proxy:bench:*")]
    finally:
        await redis.aclose()


async def forget_proxies(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match="outrider:proxy:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture
async def proxy_pair(tmp_path: Path) -> AsyncIterator[tuple[RunningProxy, RunningProxy, str]]:
    """Proxy A (Basic auth, its credentials returned) and proxy B (open)."""
    credentials = f"alice:{password()}"
    async with (
        tinyproxy(tmp_path, SOURCE_A, credentials) as a,
        tinyproxy(tmp_path, SOURCE_B) as b,
    ):
        yield a, b, credentials


async def test_every_job_kind_goes_through_the_proxies_and_a_stopped_one_is_benched(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    proxy_pair: tuple[RunningProxy, RunningProxy, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b, credentials = proxy_pair
    secret = credentials.partition(":")[2]
    await forget_proxies(settings.resolved_redis_url)
    agent_id = await make_agent(
        client,
        auth,
        secrets={"proxy-a": credentials},
        proxies=[{"url": a.url, "auth_secret": "proxy-a"}, {"url": b.url}],
        proxy_rotation="round_robin",
    )
    async with recording_site() as site, workers(run_worker):

        def spec(kind: str, path: str, **fields: Any) -> dict[str, Any]:
            formats = {"formats": ["markdown", "metadata"]} if kind != "http" else {}
            url = site.url(path)
            return {"kind": kind, "agent_id": agent_id, "input": {"url": url, **formats, **fields}}

        jobs = await run_jobs(
            client,
            auth,
            [
                spec("http", "/api"),
                spec("fetch", "/page/fetch"),
                spec("render", "/page/render"),
                spec("scrape", "/page/scrape", render="browser"),
                spec("scrape", "/page/scrape-http", render="http"),
                spec("http", "/api"),
            ],
        )
        served_by = [proxy_of(job) for job in jobs]
        # Round robin: consecutive attempts take turns, so both served.
        assert set(served_by) == {a.url, b.url}, served_by
        assert jobs[0]["result"]["body"] == {"path": "/api", "ok": True}
        for job in jobs[1:5]:
            assert "Proxies carry this page" in job["result"]["markdown"]
        # The target saw only the proxies as its clients: the pages, robots.txt, the API.
        assert site.clients() <= {SOURCE_A, SOURCE_B}, site.visits
        assert site.clients("/robots.txt"), "robots.txt was not fetched"
        assert {"/page/render", "/page/scrape"} <= {v.path for v in site.visits}
        for visit in site.visits:
            assert "proxy-authorization" not in {name.lower() for name in visit.headers}

        # B stops mid-run: the next jobs that try it bench it and succeed through A.
        await b.stop()
        before = len(site.visits)
        after = await run_jobs(
            client,
            auth,
            [spec("fetch", f"/page/after-{n}") for n in range(3)]
            + [spec("render", "/page/after-render"), spec("http", "/api")],
        )
        assert [proxy_of(job) for job in after] == [a.url] * 5
        assert {v.client for v in site.visits[before:]} == {SOURCE_A}
        assert len(await bench_keys(settings.resolved_redis_url)) == 1
        dump = await redis_dump(settings.resolved_redis_url)

    # The credentials appear in no result, attempt, log line or Redis value.
    for job in [*jobs, *after]:
        for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/attempts"):
            text = (await client.get(path, headers=auth)).text
            assert secret not in text
            assert "alice" not in text
    assert "proxy.benched" in caplog.text  # the logs were captured
    assert secret not in caplog.text
    leaks = [key for key, value in dump.items() if secret in key or secret in value]
    assert leaks == []
    assert not any(b.url in key or a.url in key for key in dump)


async def test_every_proxy_failing_ends_the_job_proxy_unavailable(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await forget_proxies(settings.resolved_redis_url)
    async with tinyproxy(tmp_path, SOURCE_A, f"alice:{password()}") as guarded:
        agent_id = await make_agent(
            client,
            auth,
            secrets={"wrong": "alice:not-the-password"},
            proxies=[
                {"url": f"http://127.0.0.1:{closed_port()}"},  # nothing listens: connect error
                {"url": guarded.url, "auth_secret": "wrong"},  # 407
            ],
        )
        async with recording_site() as site, workers(run_worker):
            spec = {
                "kind": "fetch",
                "agent_id": agent_id,
                "max_attempts": 1,
                "input": {"url": site.url("/page/x")},
            }
            (job,) = await run_jobs(client, auth, [spec])
            (again,) = await run_jobs(client, auth, [spec])  # both benched: none tried
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "proxy_unavailable"
    assert job["error"]["retryable"] is True
    assert again["error"]["code"] == "proxy_unavailable"
    assert site.visits == []
    assert len(await bench_keys(settings.resolved_redis_url)) == 2
    assert "not-the-password" not in str(job) + str(again)


async def test_a_proxy_cannot_reach_what_the_egress_policy_forbids(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    proxy_pair: tuple[RunningProxy, RunningProxy, str],
) -> None:
    _, open_proxy, _ = proxy_pair
    await forget_proxies(settings.resolved_redis_url)
    agent_id = await make_agent(client, auth, proxies=[{"url": open_proxy.url}])
    # 127.0.0.2 is loopback, allowed to the API here but not to these workers.
    async with recording_site("127.0.0.2") as forbidden, workers(run_worker):
        specs = [
            {"kind": kind, "agent_id": agent_id, "max_attempts": 1, "input": {"url": url}}
            for kind, url in [
                ("http", forbidden.url("/api")),
                ("fetch", forbidden.url("/page/f")),
                ("render", forbidden.url("/page/r")),
            ]
        ]
        jobs = await run_jobs(client, auth, specs)
    assert [job["error"]["code"] for job in jobs] == ["blocked_destination"] * 3, jobs
    assert forbidden.visits == []  # nothing reached it, through the proxy or otherwise
    assert await bench_keys(settings.resolved_redis_url) == []  # not the proxy's fault


async def test_a_name_that_resolves_to_a_forbidden_address_is_refused_before_the_proxy(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    proxy_pair: tuple[RunningProxy, RunningProxy, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker resolves the target itself and judges every address: the proxy (which
    would resolve the name on its own) is never asked."""
    _, open_proxy, _ = proxy_pair
    await forget_proxies(settings.resolved_redis_url)
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".outrider-test.example"):
            host = "127.0.0.2"  # what a rebinding DNS server would answer
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    agent_id = await make_agent(client, auth, proxies=[{"url": open_proxy.url}])
    async with recording_site("127.0.0.2") as forbidden, workers(run_worker):
        port = forbidden.base_url.rsplit(":", 1)[1]
        url = f"http://inside.outrider-test.example:{port}/page"
        specs = [
            {"kind": kind, "agent_id": agent_id, "max_attempts": 1, "input": {"url": url}}
            for kind in ("http", "fetch", "render")
        ]
        jobs = await run_jobs(client, auth, specs)
    assert [job["error"]["code"] for job in jobs] == ["blocked_destination"] * 3, jobs
    assert forbidden.visits == []
    assert await bench_keys(settings.resolved_redis_url) == []


async def test_sticky_host_keeps_one_proxy_per_host_until_it_fails(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await forget_proxies(settings.resolved_redis_url)
    async with (
        tinyproxy(tmp_path, SOURCE_A) as a,
        tinyproxy(tmp_path, SOURCE_B) as b,
        recording_site() as site,
        recording_site("127.0.0.1") as other_site,
    ):
        agent_id = await make_agent(
            client,
            auth,
            proxies=[{"url": a.url}, {"url": b.url}],
            proxy_rotation="sticky_host",
        )

        def fetch(target: RecordingSite, n: int) -> dict[str, Any]:
            url = target.url(f"/page/{n}")
            return {"kind": "fetch", "agent_id": agent_id, "input": {"url": url}}

        async with workers(run_worker):
            first = [proxy_of(j) for j in await run_jobs(client, auth, [fetch(site, 0)])]
            # another host of the same name, a different port: a host is its name
            rest = [
                proxy_of(j)
                for j in await run_jobs(
                    client, auth, [fetch(site, n) for n in range(1, 5)] + [fetch(other_site, 9)]
                )
            ]
            assert rest == first * 5
            stuck = a if first == [a.url] else b
            spare = b if stuck is a else a
            await stuck.stop()
            moved = [
                proxy_of(j)
                for j in await run_jobs(client, auth, [fetch(site, n) for n in range(5, 9)])
            ]
    assert moved == [spare.url] * 4
    assert site.clients() == {stuck.source, spare.source}


async def test_a_socks5_proxy_with_credentials_carries_fetch_and_render(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
) -> None:
    await forget_proxies(settings.resolved_redis_url)
    credentials = f"sam:{password()}"
    async with microsocks(SOURCE_SOCKS, credentials) as socks, recording_site() as site:
        agent_id = await make_agent(
            client,
            auth,
            secrets={"socks": credentials},
            proxies=[{"url": socks.url, "auth_secret": "socks"}],
        )
        specs = [
            {"kind": kind, "agent_id": agent_id, "input": {"url": site.url(f"/page/{kind}")}}
            for kind in ("fetch", "render")
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
    assert [proxy_of(job) for job in jobs] == [socks.url] * 2
    assert site.clients() == {SOURCE_SOCKS}


@contextlib.asynccontextmanager
async def failing_proxy(status_line: bytes) -> AsyncIterator[str]:
    """A 'proxy' that answers every CONNECT with `status_line` (a broken upstream)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_a_5xx_from_the_proxy_benches_it_and_a_5xx_from_the_target_does_not(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    target: TargetServer,
    tmp_path: Path,
) -> None:
    await forget_proxies(settings.resolved_redis_url)
    async with (
        failing_proxy(b"HTTP/1.1 502 Bad Gateway") as broken,
        tinyproxy(tmp_path, SOURCE_B) as good,
    ):
        agent_id = await make_agent(
            client, auth, proxies=[{"url": broken}, {"url": good.url}]
        )  # round robin: of two jobs in a row, one tries the broken proxy first
        specs: list[dict[str, Any]] = [
            {"kind": "fetch", "agent_id": agent_id, "input": {"url": target.url("/ok")}},
            {"kind": "fetch", "agent_id": agent_id, "input": {"url": target.url("/ok")}},
            {
                "kind": "http",
                "agent_id": agent_id,
                "max_attempts": 1,
                "input": {"url": target.url("/status/503")},
            },
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
            benched = await bench_keys(settings.resolved_redis_url)
    assert [proxy_of(job) for job in jobs[:2]] == [good.url] * 2
    assert jobs[2]["error"]["code"] == "http_503"  # the target's answer, through the tunnel
    assert benched == [f"outrider:proxy:bench:{proxy_id(uuid.UUID(agent_id), broken, None)}"]


async def test_proxied_requests_have_pools_of_their_own() -> None:
    route_a = ProxyRoute(parse_proxy_url("http://127.0.0.1:3128"), "a", "alice:pw")
    route_a_other_creds = ProxyRoute(parse_proxy_url("http://127.0.0.1:3128"), "a2", "bob:pw")
    route_b = ProxyRoute(parse_proxy_url("socks5://127.0.0.1:1080"), "b")
    made: list[ProxyRoute | None] = []

    def factory(proxy: ProxyRoute | None) -> aiohttp.ClientSession:
        made.append(proxy)
        return create_session(EgressPolicy(), proxy=proxy)

    sessions = OwnerSessions(factory, max_owners=10, idle_s=60)
    owner, other = uuid.uuid4(), uuid.uuid4()
    try:
        async with (
            sessions.lease(owner) as direct,
            sessions.lease(owner, route_a) as via_a,
            sessions.lease(owner, route_a_other_creds) as via_a_bob,
            sessions.lease(owner, route_b) as via_b,
            sessions.lease(other, route_a) as theirs,
            sessions.lease(owner, route_a) as via_a_again,
        ):
            pools = [direct, via_a, via_a_bob, via_b, theirs]
            assert len({id(session) for session in pools}) == 5
            assert via_a_again is via_a
            assert isinstance(via_a.connector, ProxiedConnector)
            assert not isinstance(direct.connector, ProxiedConnector)
        assert made == [None, route_a, route_a_other_creds, route_b, route_a]
        assert "pw" not in repr(route_a)
    finally:
        await sessions.close()


async def test_a_render_whose_proxy_fails_in_the_browser_moves_on_to_the_next(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Without robots.txt the first connection is Chromium's, through the door: the door's
    tunnel through the dead proxy fails, and the job benches it and renders through the next."""
    await forget_proxies(settings.resolved_redis_url)
    dead = f"http://127.0.0.1:{closed_port()}"
    async with tinyproxy(tmp_path, SOURCE_B) as good, recording_site() as site:
        agent_id = await make_agent(
            client, auth, obey_robots=False, proxies=[{"url": dead}, {"url": good.url}]
        )
        specs: list[dict[str, Any]] = [
            {"kind": kind, "agent_id": agent_id, "input": {"url": site.url(f"/page/{n}"), **more}}
            for n, (kind, more) in enumerate(
                [("render", {}), ("render", {}), ("scrape", {"render": "browser"})]
            )
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
            benched = await bench_keys(settings.resolved_redis_url)
    assert [proxy_of(job) for job in jobs] == [good.url] * 3
    assert benched == [f"outrider:proxy:bench:{proxy_id(uuid.UUID(agent_id), dead, None)}"]
    assert site.clients() == {SOURCE_B}
    assert "/robots.txt" not in {visit.path for visit in site.visits}


async def test_a_dead_target_benches_no_proxy_and_fails_with_the_targets_error(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """tinyproxy answers CONNECT to a dead target 500, microsocks "connection refused": each
    tries, neither is benched, the job fails `connection_error` as it would without a proxy;
    and the proxies then serve a live target."""
    await forget_proxies(settings.resolved_redis_url)
    credentials = f"sam:{password()}"
    async with (
        tinyproxy(tmp_path, SOURCE_A) as http_proxy,
        microsocks(SOURCE_SOCKS, credentials) as socks,
        recording_site() as site,
    ):
        agent_id = await make_agent(
            client,
            auth,
            secrets={"socks": credentials},
            proxies=[{"url": http_proxy.url}, {"url": socks.url, "auth_secret": "socks"}],
        )
        dead = f"http://127.0.0.1:{closed_port()}"
        specs = [
            {"kind": kind, "agent_id": agent_id, "max_attempts": 1, "input": {"url": f"{dead}/{n}"}}
            for n, kind in enumerate(["http", "fetch", "render", "http", "fetch"])
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
            benched = await bench_keys(settings.resolved_redis_url)
            alive = await run_jobs(
                client,
                auth,
                [
                    {
                        "kind": "fetch",
                        "agent_id": agent_id,
                        "input": {"url": site.url(f"/page/{n}")},
                    }
                    for n in range(4)
                ],
            )
    assert [job["error"]["code"] for job in jobs] == ["connection_error"] * 5, jobs
    assert all(job["error"]["retryable"] for job in jobs)
    assert benched == []
    assert {proxy_of(job) for job in alive} == {http_proxy.url, socks.url}
    assert site.clients() == {SOURCE_A, SOURCE_SOCKS}


async def test_a_proxy_that_says_every_target_is_unreachable_is_benched_once_another_reaches_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """A broken proxy answers 500 to every CONNECT: as soon as the good proxy reaches the same
    target (even with a 404 from it), the broken one is blamed and benched."""
    await forget_proxies(settings.resolved_redis_url)
    async with (
        failing_proxy(b"HTTP/1.1 500 Unable to connect") as broken,
        tinyproxy(tmp_path, SOURCE_B) as good,
        recording_site() as site,
    ):
        agent_id = await make_agent(client, auth, proxies=[{"url": broken}, {"url": good.url}])
        spec = {
            "kind": "http",
            "agent_id": agent_id,
            "max_attempts": 1,
            "input": {"url": site.url("/missing")},
        }
        async with workers(run_worker, browser=False):
            (job,) = await run_jobs(client, auth, [spec])  # round robin: the broken one first
            benched = await bench_keys(settings.resolved_redis_url)
    assert (job["error"]["code"], job["error"]["details"]["status"]) == ("http_4xx", 404), job
    assert benched == [f"outrider:proxy:bench:{proxy_id(uuid.UUID(agent_id), broken, None)}"]
    assert site.clients() == {SOURCE_B}


async def test_an_https_proxy_is_trusted_through_the_ca_file_and_refused_without_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """TLS to the proxy: a certificate from a private CA is trusted with OUTRIDER_PROXY_CA_FILE
    (fetch and render go through it), and refused without it (the proxy is benched: nothing
    reaches the target unverified)."""
    await forget_proxies(settings.resolved_redis_url)
    ca = private_ca(tmp_path, "127.0.0.1")
    async with (
        tinyproxy(tmp_path, SOURCE_TLS) as inner,
        tls_front(inner, ca) as https_proxy,
        recording_site() as site,
    ):
        agent_id = await make_agent(client, auth, proxies=[{"url": https_proxy}])

        def spec(kind: str, n: int) -> dict[str, Any]:
            url = site.url(f"/page/{kind}-{n}")
            return {"kind": kind, "agent_id": agent_id, "max_attempts": 1, "input": {"url": url}}

        async with workers(run_worker, proxy_ca_file=ca.ca_file):
            trusted = await run_jobs(client, auth, [spec("fetch", 0), spec("render", 0)])
        assert [proxy_of(job) for job in trusted] == [https_proxy] * 2
        assert "Proxies carry this page" in trusted[0]["result"]["markdown"]
        assert site.clients() == {SOURCE_TLS}
        visits = len(site.visits)
        async with workers(run_worker, browser=False):  # the system's CAs only
            (untrusted,) = await run_jobs(client, auth, [spec("fetch", 1)])
        assert untrusted["error"]["code"] == "proxy_unavailable", untrusted
        assert len(site.visits) == visits
        assert len(await bench_keys(settings.resolved_redis_url)) == 1

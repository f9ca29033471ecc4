"""Jobs through an agent's proxies, with real forward proxies on loopback (tinyproxy, microsocks,
and a TLS front for an `https://` proxy).

Each proxy connects out from a loopback address of its own (127.0.0.2, .3, .4, .5), so the
target sees who its client was; the worker itself would come from 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from shared.egress import EgressPolicy
from shared.proxies import parse_proxy_url
from tests.conftest import RunWorker
from tests.worker.proxy_servers import (
    NEEDS_PROXY_TOOLS,
    RecordingSite,
    RunningProxy,
    microsocks,
    private_ca,
    recording_site,
    tinyproxy,
    tls_front,
)
from tests.worker.proxy_support import (
    SOURCE_A,
    SOURCE_B,
    SOURCE_SOCKS,
    SOURCE_TLS,
    bench_key,
    bench_keys,
    make_agent,
    password,
    proxied_agent,
    proxied_job,
    proxy_of,
    run_jobs,
    workers,
)
from tests.worker.test_secrets import redis_dump
from worker.http_client import OwnerSessions, ProxiedConnector, create_session
from worker.proxy_tunnel import ProxyRoute

pytestmark = NEEDS_PROXY_TOOLS


@pytest.fixture
async def proxy_pair(tmp_path: Path) -> AsyncIterator[tuple[RunningProxy, RunningProxy, str]]:
    """Proxy A (Basic auth, its credentials returned) and proxy B (open)."""
    credentials = f"alice:{password()}"
    async with (
        tinyproxy(tmp_path, SOURCE_A, credentials) as a,
        tinyproxy(tmp_path, SOURCE_B) as b,
    ):
        yield a, b, credentials


@pytest.fixture
async def site() -> AsyncIterator[RecordingSite]:
    async with recording_site() as recording:
        yield recording


async def test_every_job_kind_goes_through_the_proxies_and_a_stopped_one_is_benched(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    proxy_pair: tuple[RunningProxy, RunningProxy, str],
    site: RecordingSite,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b, credentials = proxy_pair
    secret = credentials.partition(":")[2]
    agent_id = await proxied_agent(
        client, auth, [(a.url, credentials), (b.url, None)], proxy_rotation="round_robin"
    )

    def spec(kind: str, path: str, **fields: Any) -> dict[str, Any]:
        formats: dict[str, Any] = {"formats": ["markdown", "metadata"]} if kind != "http" else {}
        return proxied_job(kind, agent_id, site.url(path), **formats, **fields)

    async with workers(run_worker):
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
        assert len(await bench_keys(proxy_redis)) == 1
        dump = await redis_dump(proxy_redis)

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


async def test_a_proxy_cannot_reach_what_the_egress_policy_forbids(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    proxy_pair: tuple[RunningProxy, RunningProxy, str],
) -> None:
    _, open_proxy, _ = proxy_pair
    agent_id = await proxied_agent(client, auth, [(open_proxy.url, None)])
    # 127.0.0.2 is loopback, allowed to the API here but not to these workers.
    async with recording_site("127.0.0.2") as forbidden, workers(run_worker):
        specs = [
            proxied_job(kind, agent_id, url, attempts=1)
            for kind, url in [
                ("http", forbidden.url("/api")),
                ("fetch", forbidden.url("/page/f")),
                ("render", forbidden.url("/page/r")),
            ]
        ]
        jobs = await run_jobs(client, auth, specs)
    assert [job["error"]["code"] for job in jobs] == ["blocked_destination"] * 3, jobs
    assert forbidden.visits == []  # nothing reached it, through the proxy or otherwise
    assert await bench_keys(proxy_redis) == []  # not the proxy's fault


async def test_a_name_that_resolves_to_a_forbidden_address_is_refused_before_the_proxy(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    proxy_pair: tuple[RunningProxy, RunningProxy, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker resolves the target itself and judges every address: the proxy (which
    would resolve the name on its own) is never asked."""
    _, open_proxy, _ = proxy_pair
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".outrider-test.example"):
            host = "127.0.0.2"  # what a rebinding DNS server would answer
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    agent_id = await proxied_agent(client, auth, [(open_proxy.url, None)])
    async with recording_site("127.0.0.2") as forbidden, workers(run_worker):
        port = forbidden.base_url.rsplit(":", 1)[1]
        url = f"http://inside.outrider-test.example:{port}/page"
        specs = [
            proxied_job(kind, agent_id, url, attempts=1) for kind in ("http", "fetch", "render")
        ]
        jobs = await run_jobs(client, auth, specs)
    assert [job["error"]["code"] for job in jobs] == ["blocked_destination"] * 3, jobs
    assert forbidden.visits == []
    assert await bench_keys(proxy_redis) == []


async def test_sticky_host_keeps_one_proxy_per_host_until_it_fails(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
    tmp_path: Path,
) -> None:
    async with (
        tinyproxy(tmp_path, SOURCE_A) as a,
        tinyproxy(tmp_path, SOURCE_B) as b,
        recording_site("127.0.0.1") as other_site,
    ):
        agent_id = await proxied_agent(
            client, auth, [(a.url, None), (b.url, None)], proxy_rotation="sticky_host"
        )

        async def served_by(pages: list[tuple[RecordingSite, int]]) -> list[str]:
            specs = [proxied_job("fetch", agent_id, on.url(f"/page/{n}")) for on, n in pages]
            return [proxy_of(job) for job in await run_jobs(client, auth, specs)]

        async with workers(run_worker, browser=False):
            first = await served_by([(site, 0)])
            # another host of the same name, a different port: a host is its name
            rest = await served_by([(site, n) for n in range(1, 5)] + [(other_site, 9)])
            assert rest == first * 5
            stuck = a if first == [a.url] else b
            spare = b if stuck is a else a
            await stuck.stop()
            moved = await served_by([(site, n) for n in range(5, 9)])
    assert moved == [spare.url] * 4
    assert site.clients() == {stuck.source, spare.source}


async def test_a_socks5_proxy_with_credentials_carries_fetch_and_render(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
) -> None:
    credentials = f"sam:{password()}"
    async with microsocks(SOURCE_SOCKS, credentials) as socks:
        agent_id = await proxied_agent(client, auth, [(socks.url, credentials)])
        specs = [
            proxied_job(kind, agent_id, site.url(f"/page/{kind}")) for kind in ("fetch", "render")
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
    assert [proxy_of(job) for job in jobs] == [socks.url] * 2
    assert site.clients() == {SOURCE_SOCKS}


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


async def test_an_https_proxy_is_trusted_through_the_ca_file_and_refused_without_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
    tmp_path: Path,
) -> None:
    """TLS to the proxy: a certificate from a private CA is trusted with OUTRIDER_PROXY_CA_FILE
    (fetch and render go through it), and refused without it (the proxy is benched: nothing
    reaches the target unverified)."""
    ca = private_ca(tmp_path, "127.0.0.1")
    async with tinyproxy(tmp_path, SOURCE_TLS) as inner, tls_front(inner, ca) as https_proxy:
        agent_id = await make_agent(client, auth, proxies=[{"url": https_proxy}])

        def spec(kind: str, n: int) -> dict[str, Any]:
            return proxied_job(kind, agent_id, site.url(f"/page/{kind}-{n}"), attempts=1)

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
        assert await bench_keys(proxy_redis) == [bench_key(agent_id, https_proxy)]

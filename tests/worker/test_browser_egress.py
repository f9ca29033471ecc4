"""The browser's egress: the proxy on its own, then real pages that try to reach a canary.

Browser workers here may reach 127.0.0.1 only; the canary on 127.0.0.2 counts every TCP
connection and UDP datagram. A page must still render while all of its attempts fail.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Route
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.egress import EgressPolicy
from shared.queue import JobQueue, create_redis
from shared.repositories.job import insert_jobs
from shared.settings import Settings
from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker.support import make_owner, submit
from tests.worker.test_browser_site import Site, browser_worker, render_job, serve_site
from worker import browser_egress
from worker.browser_egress import MARKER_HEADER, EgressProxy, resolve_checked
from worker.engines import render
from worker.refusal import Refusal

POLICY = EgressPolicy(["127.0.0.1/32"], ["1-65535"])


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serve_site() as served:
        yield served


@pytest.fixture
async def proxy() -> AsyncIterator[EgressProxy]:
    egress = EgressProxy(POLICY)
    await egress.start()
    yield egress
    await egress.close()


async def exchange(proxy: EgressProxy, head: str, then: str = "") -> str:
    """Send a request head through a context's door of the proxy (and, after a CONNECT's
    answer, `then`)."""
    async with proxy.door() as door:
        url = door.url
        return await _exchange(int(url.rsplit(":", 1)[1]), head, then)


async def _exchange(port: int, head: str, then: str = "") -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        answer = b""
        if then:
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if answer.startswith(b"HTTP/1.1 200"):
                writer.write(then.encode())
        return (answer + await asyncio.wait_for(reader.read(), 5)).decode("latin-1")
    finally:
        writer.close()


def get(url: str, host: str) -> str:
    return f"GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Connection: keep-alive\r\n\r\n"


async def test_the_proxy_refuses_forbidden_destinations_and_serves_allowed_ones(
    proxy: EgressProxy, site: Site
) -> None:
    c, allowed = site.canary.tcp_port, site.base_url.removeprefix("http://")
    marker = f"{MARKER_HEADER}: {proxy.token} blocked_destination"
    for head in (
        get(f"http://127.0.0.2:{c}/x", f"127.0.0.2:{c}"),
        f"CONNECT 127.0.0.2:{c} HTTP/1.1\r\nHost: 127.0.0.2:{c}\r\n\r\n",
        get(f"http://0x7f000002:{c}/hex", "x"),  # 127.0.0.2, spelled otherwise
        get(f"http://[::ffff:127.0.0.2]:{c}/mapped", "x"),
        get(f"http://0.0.0.0:{c}/this-host", "x"),
    ):
        answer = await exchange(proxy, head)
        assert answer.startswith("HTTP/1.1 403 "), (head, answer)
        assert marker in answer, answer
    assert (await exchange(proxy, "GET file:///etc/passwd HTTP/1.1\r\n\r\n")).startswith(
        "HTTP/1.1 400 "
    )
    page = await exchange(proxy, get(site.url("/js"), allowed))
    tunneled = await exchange(
        proxy,
        f"CONNECT {allowed} HTTP/1.1\r\nHost: {allowed}\r\n\r\n",
        then=f"GET /js HTTP/1.1\r\nHost: {allowed}\r\nConnection: close\r\n\r\n",
    )

    assert page.startswith("HTTP/1.1 200 OK"), page
    assert "Connection: close" in page
    assert "<div id='out'>static</div>" in page
    assert tunneled.startswith("HTTP/1.1 200 Connection Established"), tunneled
    assert "<div id='out'>static</div>" in tunneled
    assert site.hits["/js"] == 2
    assert site.canary.hits == 0
    assert proxy.refusal_for(f"http://127.0.0.2:{c}/") is not None


async def test_the_proxy_checks_every_answer_and_connects_only_to_checked_addresses(
    proxy: EgressProxy, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, port = site.canary.tcp_port, int(site.base_url.rsplit(":", 1)[1])
    calls: list[str] = []
    flip = itertools.cycle([["127.0.0.1"], ["127.0.0.2"]])
    answers: dict[str, Callable[[], list[str]]] = {
        "mixed.test": lambda: ["127.0.0.1", "127.0.0.2"],
        "gone.test": list,
        "good.test": lambda: ["127.0.0.1"],
        "rebind.test": lambda: next(flip),
    }

    async def fake(host: str, _port: int) -> list[str]:
        calls.append(host)
        return answers[host]()

    monkeypatch.setattr(browser_egress, "system_resolver", fake)
    mixed = await exchange(proxy, get(f"http://mixed.test:{c}/", "mixed.test"))
    gone = await exchange(proxy, get(f"http://gone.test:{c}/", "gone.test"))
    good = await exchange(proxy, get(f"http://good.test:{port}/js", "good.test"))
    rebound = [
        await exchange(proxy, get(f"http://rebind.test:{c}/{n}", "rebind.test")) for n in range(6)
    ]

    assert mixed.startswith("HTTP/1.1 403 ")
    assert "blocked_destination" in mixed
    assert gone.startswith("HTTP/1.1 502 ")
    assert f"{proxy.token} dns_not_found" in gone
    assert good.startswith("HTTP/1.1 200 OK")
    assert calls.count("good.test") == 1  # resolved once: the address checked is the one used
    assert sum(r.startswith("HTTP/1.1 403 ") for r in rebound) == 3
    assert site.canary.hits == 0


async def test_the_browser_wide_listener_refuses_everything_without_a_lookup(
    proxy: EgressProxy, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What arrives outside a context's door is Chromium's own background traffic."""
    asked: list[str] = []

    async def spy(host: str, _port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(browser_egress, "system_resolver", spy)
    port = int(site.base_url.rsplit(":", 1)[1])
    plain = await _exchange(proxy.port, get(f"http://127.0.0.1:{port}/js", "127.0.0.1"))
    tunnel = await _exchange(proxy.port, "CONNECT update.googleapis.com:443 HTTP/1.1\r\n\r\n")
    assert plain.startswith("HTTP/1.1 403 ")
    assert "blocked_destination" in plain
    assert tunnel.startswith("HTTP/1.1 403 ")
    assert asked == []
    assert (await exchange(proxy, get(f"http://127.0.0.1:{port}/js", "127.0.0.1"))).startswith(
        "HTTP/1.1 200"
    )


async def test_chromium_background_requests_never_leave_the_machine(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    site: Site,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chromium calls its update and account services on its own; only the page's own hosts
    may even be looked up."""
    real = browser_egress.system_resolver
    asked: list[str] = []

    async def spy(host: str, port: int) -> list[str]:
        asked.append(host)
        return await real(host, port)

    monkeypatch.setattr(browser_egress, "system_resolver", spy)
    spec = render_job(site.url("/js"), wait_for={"ms": 3000})
    async with browser_worker(run_worker):
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)
        await asyncio.sleep(2)  # the browser's background services start within seconds

    assert job["status"] == "succeeded", job
    assert set(asked) <= {"127.0.0.1"}, asked


async def test_the_real_resolver_reports_unknown_hosts() -> None:
    with pytest.raises(Refusal) as refused:
        await resolve_checked(POLICY, "http://does-not-exist.invalid/")
    assert refused.value.code == "dns_not_found"


def _pass_everything(*_: Any) -> Callable[[Route], Awaitable[None]]:
    async def handle(route: Route) -> None:
        await route.continue_()

    return handle


@pytest.mark.parametrize("layers", ["proxy alone", "route and proxy", "a route that passes all"])
async def test_a_page_cannot_reach_a_forbidden_address_by_any_route(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    site: Site,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
    layers: str,
) -> None:
    # A plain job has no context route; one that sends headers gets one (with the URL check).
    headers = {} if layers == "proxy alone" else {"x-test": "1"}
    if layers == "a route that passes all":  # take the route's URL check away: the proxy suffices
        monkeypatch.setattr(render, "_router", _pass_everything)
    spec = render_job(site.url("/attack"), wait_for={"ms": 1500}, headers=headers)
    async with browser_worker(run_worker):
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)

    assert job["status"] == "succeeded", job
    assert '<h1 id="done">still rendered</h1>' in job["result"]["raw_html"]
    assert site.hits["/attack"] == 1
    assert site.hits["/redirect"] >= 1  # the iframe's redirect was followed, to a refusal
    assert site.canary.connections == 0
    assert site.canary.datagrams == 0
    assert job["result"]["blocked_requests"] >= 5  # by the route's check or the proxy's


async def test_dns_answers_that_change_between_calls_cannot_reach_the_canary(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    site: Site,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flip = itertools.cycle([["127.0.0.1"], ["127.0.0.2"]])
    real = browser_egress.system_resolver
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        if host != "rebind.test":
            return await real(host, port)
        asked.append(host)
        return next(flip)

    monkeypatch.setattr(browser_egress, "system_resolver", rebinding)
    spec = render_job(site.url("/rebind"), wait_for={"ms": 800})
    async with browser_worker(run_worker):
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)

    assert job["status"] == "succeeded", job
    assert "rendered" in job["result"]["raw_html"]
    assert len(asked) >= 4  # the page's requests were resolved by the proxy, answers flipping
    assert site.canary.hits == 0


async def test_a_redirect_of_the_page_to_a_forbidden_address_fails_the_job(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    target = f"http://127.0.0.2:{site.canary.tcp_port}/"
    spec = {**render_job(site.url(f"/redirect?to={target}")), "max_attempts": 1}
    async with browser_worker(run_worker):
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "blocked_destination"
    assert job["error"]["retryable"] is False
    assert site.canary.hits == 0


async def test_other_schemes_are_refused_before_and_during_navigation(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    site: Site,
    run_worker: RunWorker,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    schemes = [
        "file:///etc/passwd",
        "data:text/html,<h1>hi</h1>",
        "chrome://version",
        f"view-source:{site.url('/js')}",
        "javascript:alert(1)",
        "about:blank",
    ]
    for url in schemes:
        assert_error(
            await client.post("/v1/jobs", json=render_job(url), headers=auth), 422, "invalid_url"
        )

    # A row that skipped the API's check is refused by the worker before any navigation.
    owner = await make_owner(sessionmaker)
    row = {
        "owner_id": owner.id,
        "agent_id": owner.agent_id,
        "kind": "render",
        "queue": "browser",
        "input": {"url": "file:///etc/passwd"},
        "max_attempts": 1,
        "timeout_s": 10.0,
    }
    async with sessionmaker.begin() as session:
        (sneaky,) = await insert_jobs(session, [row])
    redis = create_redis(settings.resolved_redis_url, patient=False)
    actions = [{"type": "click", "selector": "#file"}, {"type": "wait", "ms": 400}]
    async with browser_worker(run_worker):
        await JobQueue(redis, 600).enqueue([sneaky], "submitted")
        refused = await wait_for_job(client, owner.auth, str(sneaky.id), timeout_s=30)
        spec = render_job(site.url("/leave"), actions=actions, formats=["raw_html", "metadata"])
        stayed = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)
    await redis.aclose()

    assert (refused["status"], refused["error"]["code"]) == ("failed", "invalid_url")
    assert stayed["status"] == "succeeded", stayed
    assert stayed["result"]["metadata"]["final_url"] == site.url("/leave")
    assert '<p id="here">still here</p>' in stayed["result"]["raw_html"]
    assert "root:x:0:0" not in stayed["result"]["raw_html"]


@pytest.mark.parametrize(
    ("message", "code", "retryable"),
    [
        ("net::ERR_NAME_NOT_RESOLVED at https://gone.example/", "dns_not_found", False),
        ("net::ERR_CERT_AUTHORITY_INVALID at https://self-signed.example/", "tls_error", False),
        ("net::ERR_SSL_PROTOCOL_ERROR at https://old.example/", "tls_error", False),
        ("net::ERR_CONNECTION_RESET at https://flaky.example/", "connection_error", True),
        ("net::ERR_CONNECTION_TIMED_OUT at https://slow.example/", "timeout", True),
        ("net::ERR_BLOCKED_BY_CLIENT at http://127.0.0.2/", "blocked_destination", False),
        ("net::ERR_TUNNEL_CONNECTION_FAILED at https://refused.example/", "blocked_destination",
         False),
        ("net::ERR_TUNNEL_CONNECTION_FAILED at https://unknown.example/", "connection_error",
         True),
        ("Target page, context or browser has been closed", "browser_error", True),
    ],
)  # fmt: skip
def test_a_failed_navigation_reads_as_a_stable_code(
    proxy: EgressProxy, message: str, code: str, retryable: bool
) -> None:
    proxy.refused["refused.example:443"] = Refusal("blocked_destination", "loopback")
    hops = ["https://start.example/", message.rsplit(" at ", 1)[-1]]

    error = render.navigation_error(PlaywrightError(message), proxy, hops)

    assert (error.code, error.retryable) == (code, retryable)

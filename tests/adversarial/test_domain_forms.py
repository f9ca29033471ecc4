"""Agent domain rules see an address however it is spelled: decimal, octal, hex, short,
IPv4-mapped IPv6; at submit and on every redirect hop, for http, fetch and render jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import TargetServer, serve_aiohttp, wait_for_job
from tests.worker.support import submit
from tests.worker.test_browser_site import browser_worker

BLOCKED_HOST = "127.0.0.3"
# Every spelling of 127.0.0.3 that the egress policy lets through (IPv4-compatible IPv6,
# ::127.0.0.3, is refused by the egress policy itself: tests/shared/test_egress.py).
SPELLINGS = [
    "127.0.0.3",
    "127.0.0.3.",
    "2130706435",
    "0x7f000003",
    "0X7F000003",
    "0177.0.0.3",
    "0x7f.0.0.3",
    "0177.0.0.03",
    "127.3",
    "127.0.3",
    "[::ffff:127.0.0.3]",
    "[::FFFF:127.0.0.3]",
    "[::ffff:7f00:3]",
    "[0:0:0:0:0:ffff:7f00:3]",
    "[::ffff:127.0.0.3%25eth0]",
]
KINDS = ["http", "fetch", "render"]


@pytest.fixture
async def blocked_site() -> AsyncIterator[dict[str, Any]]:
    """A page on 127.0.0.3 that counts its visitors: any visit is a rule that did not hold."""
    state: dict[str, Any] = {"hits": 0}

    async def page(request: web.Request) -> web.Response:
        state["hits"] += 1
        return web.Response(
            text="<html><body><p>reached</p></body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    async with serve_aiohttp(app, BLOCKED_HOST) as url:
        state["port"] = int(url.rsplit(":", 1)[1])
        yield state


def urls(port: int) -> list[str]:
    return [f"http://{spelling}:{port}/page" for spelling in SPELLINGS]


def redirect(target: TargetServer, to: str) -> str:
    """A URL on the allowed target that redirects to `to`."""
    return str(httpx.URL(target.url("/redirect"), params={"to": to}))


async def agent_with(client: httpx.AsyncClient, auth: dict[str, str], **rules: Any) -> str:
    response = await client.post("/v1/agents", json={"name": "ruled", **rules}, headers=auth)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


def job(kind: str, url: str, agent_id: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": kind, "input": {"url": url}, "agent_id": agent_id}
    spec["max_attempts"] = 1
    return spec


@pytest.mark.parametrize(
    "rule", ["127.0.0.3", "2130706435", "0x7f000003", "0177.0.0.3", "127.3", "::ffff:7f00:3"]
)
async def test_every_spelling_is_refused_at_submit(
    client: httpx.AsyncClient, auth: dict[str, str], blocked_site: dict[str, Any], rule: str
) -> None:
    agent_id = await agent_with(client, auth, blocked_domains=[rule])
    for kind in KINDS:
        for url in urls(blocked_site["port"]):
            response = await client.post("/v1/jobs", json=job(kind, url, agent_id), headers=auth)
            assert_error(response, 422, "domain_not_allowed")
    ok = await client.post(
        "/v1/jobs", json=job("http", "http://127.0.0.4:9/", agent_id), headers=auth
    )
    assert ok.status_code == 202, ok.text
    assert blocked_site["hits"] == 0


async def test_an_allow_list_in_another_spelling(
    client: httpx.AsyncClient, auth: dict[str, str], blocked_site: dict[str, Any]
) -> None:
    agent_id = await agent_with(client, auth, allowed_domains=["0x7f000001", "[::ffff:127.0.0.2]"])
    for url in ["http://127.0.0.1:9/", "http://2130706433:9/", "http://[::ffff:127.0.0.2]:9/"]:
        response = await client.post("/v1/jobs", json=job("http", url, agent_id), headers=auth)
        assert response.status_code == 202, (url, response.text)
    for url in urls(blocked_site["port"]):
        response = await client.post("/v1/jobs", json=job("fetch", url, agent_id), headers=auth)
        assert_error(response, 422, "domain_not_allowed")


@pytest.mark.parametrize("kind", ["http", "fetch"])
async def test_every_spelling_is_refused_on_a_redirect_hop(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    blocked_site: dict[str, Any],
    run_worker: RunWorker,
    kind: str,
) -> None:
    agent_id = await agent_with(client, auth, blocked_domains=[BLOCKED_HOST])
    hops = [redirect(target, url) for url in urls(blocked_site["port"])]
    async with run_worker(host_rate_per_s=0, host_concurrency=0):
        ids = [await submit(client, auth, job(kind, hop, agent_id)) for hop in hops]
        found = [await wait_for_job(client, auth, job_id, timeout_s=60) for job_id in ids]
    outcomes = [(j["status"], j["error"] and j["error"]["code"]) for j in found]
    assert outcomes == [("failed", "domain_not_allowed")] * len(hops), list(
        zip(SPELLINGS, outcomes, strict=True)
    )
    assert target.hits["/redirect"] == len(hops)
    assert blocked_site["hits"] == 0


async def test_render_refuses_a_page_that_lands_on_a_spelling_of_a_blocked_address(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    blocked_site: dict[str, Any],
    run_worker: RunWorker,
) -> None:
    agent_id = await agent_with(client, auth, blocked_domains=[BLOCKED_HOST])
    port = blocked_site["port"]
    landing = [f"http://[::ffff:127.0.0.3]:{port}/page", f"http://2130706435:{port}/page"]
    hops = [redirect(target, url) for url in landing]
    async with browser_worker(run_worker, egress_allow_cidrs=["127.0.0.0/8"]):
        ids = [await submit(client, auth, job("render", hop, agent_id)) for hop in hops]
        found = [await wait_for_job(client, auth, job_id, timeout_s=60) for job_id in ids]
    outcomes = [(j["status"], j["error"] and j["error"]["code"]) for j in found]
    assert outcomes == [("failed", "domain_not_allowed")] * 2

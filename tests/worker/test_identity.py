"""Locale, time zone, place and stealth, as the site sees them: the headers of fetch, http and
render requests, and what scripts read in the page. Real Chromium; the site is on loopback."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker.reach_site import ReachSite, extracted, serve_reach_site
from tests.worker.support import submit
from tests.worker.test_browser_site import browser_worker
from worker.identity import accept_language, country_zone, languages, platform_of


@pytest.fixture
async def site() -> AsyncIterator[ReachSite]:
    async with serve_reach_site() as served:
        yield served


@contextlib.asynccontextmanager
async def workers(run_worker: RunWorker) -> AsyncIterator[None]:
    async with browser_worker(run_worker), run_worker(queue="default", host_rate_per_s=0):
        yield


async def run(
    client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any]
) -> dict[str, Any]:
    job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=40)
    assert job["status"] == "succeeded", job
    return job


async def agent(client: httpx.AsyncClient, auth: dict[str, str], **profile: Any) -> str:
    body = {"name": f"agent-{uuid.uuid4().hex[:8]}", **profile}
    created = await client.post("/v1/agents", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in profile} == profile
    return str(created.json()["id"])


def page(url: str, **fields: Any) -> dict[str, Any]:
    """A render that waits for the page's script to finish and returns what it wrote."""
    return {
        "kind": "render",
        "input": {
            "url": url,
            "formats": ["markdown"],
            "wait_for": {"selector": "#done"},
            "extract": {"out": "#out"},
            **fields,
        },
    }


def test_locale_helpers() -> None:
    assert accept_language("de-DE") == "de-DE,de;q=0.9"
    assert accept_language("fr") == "fr"
    assert languages("de-DE") == ("de-DE", "de")
    assert country_zone("de-DE") == "Europe/Berlin"
    assert country_zone("ja-JP") == "Asia/Tokyo"  # from the tz database's zone.tab
    assert country_zone("pt-BR") == "America/Sao_Paulo"
    assert country_zone("en") is None
    windows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/150.0.0.0"
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    assert platform_of(windows) == "Win32"
    assert platform_of(iphone) == "iPhone"
    assert platform_of("Mozilla/5.0 (X11; Linux x86_64)") == "Linux x86_64"


async def test_locale_sets_accept_language_for_every_kind_and_the_browser(
    client: httpx.AsyncClient, auth: dict[str, str], site: ReachSite, run_worker: RunWorker
) -> None:
    french = await agent(client, auth, locale="fr-FR", timezone="Europe/Paris")
    whoami = site.url("/whoami")
    place = {"latitude": 35.6762, "longitude": 139.6503, "accuracy": 10}
    async with workers(run_worker):
        fetched = await run(
            client, auth, {"kind": "fetch", "input": {"url": whoami, "locale": "de-DE"}}
        )
        called = await run(
            client, auth, {"kind": "http", "input": {"url": whoami, "locale": "de-DE"}}
        )
        defaulted = await run(
            client, auth, {"kind": "http", "input": {"url": whoami}, "agent_id": french}
        )
        overridden = await run(
            client,
            auth,
            {
                "kind": "http",
                "input": {"url": whoami, "locale": "de-DE", "headers": {"Accept-Language": "x"}},
            },
        )
        plain = await run(client, auth, {"kind": "http", "input": {"url": whoami}})
        rendered = await run(
            client,
            auth,
            page(site.url("/place"), locale="de-DE", timezone="Asia/Tokyo", geolocation=place),
        )
        by_agent = await run(client, auth, {**page(site.url("/place")), "agent_id": french})

    assert called["result"]["body"]["accept-language"] == "de-DE,de;q=0.9"
    assert defaulted["result"]["body"]["accept-language"] == "fr-FR,fr;q=0.9"
    assert overridden["result"]["body"]["accept-language"] == "x"  # the job's header wins
    assert plain["result"]["body"]["accept-language"] == ""
    assert fetched["status"] == "succeeded"
    fetch_seen = [s["accept-language"] for s in site.seen["/whoami"]]
    assert fetch_seen[0] == "de-DE,de;q=0.9"  # the fetch's, before the http jobs'

    page_seen = [s["accept-language"] for s in site.seen["/place"]]
    assert page_seen[0].startswith("de-DE")
    assert page_seen[1].startswith("fr-FR")
    inside = extracted(rendered)
    assert inside["language"] == "de-DE"
    assert inside["timezone"] == "Asia/Tokyo"
    assert (inside.get("latitude"), inside.get("longitude")) == (35.6762, 139.6503), inside
    agent_inside = extracted(by_agent)
    assert (agent_inside["language"], agent_inside["timezone"]) == ("fr-FR", "Europe/Paris")
    assert "latitude" not in agent_inside  # no place given: the permission is not granted


async def test_stealth_passes_the_headless_checks_that_a_plain_render_fails(
    client: httpx.AsyncClient, auth: dict[str, str], site: ReachSite, run_worker: RunWorker
) -> None:
    stealthy = await agent(client, auth, stealth=True, locale="de-DE")
    checks = site.url("/checks")
    async with workers(run_worker):
        hidden = await run(client, auth, {**page(checks), "agent_id": stealthy})
        plain = await run(client, auth, page(checks))
        placed = await run(client, auth, {**page(site.url("/place")), "agent_id": stealthy})

    hidden_report, plain_report = extracted(hidden), extracted(plain)
    print("stealth:", hidden_report)  # what the page saw, for the record
    print("plain:", plain_report)
    verdicts = hidden_report["checks"]
    # WebGL is measured only where Chromium has it (null: no GPU and no software GL here).
    assert all(verdicts[name] is not False for name in verdicts), hidden_report
    assert sum(v is True for v in verdicts.values()) >= len(verdicts) - 1
    failed = {name for name, ok in plain_report["checks"].items() if ok is False}
    assert {"webdriver", "headless_ua"} <= failed, plain_report

    # One coherent fingerprint: the agent's locale everywhere, a zone of its country, the
    # user agent's OS in navigator.platform, no trace of headless in the headers either.
    seen = hidden_report["seen"]
    assert seen["languages"] == ["de-DE", "de"]
    assert "HeadlessChrome" not in seen["user_agent"]
    assert seen["platform"] == "Linux x86_64"
    assert "Linux" in seen["user_agent"]
    (stealth_request, plain_request) = site.seen["/checks"]
    assert stealth_request["accept-language"].startswith("de-DE")
    assert "HeadlessChrome" not in stealth_request["user-agent"]
    assert "HeadlessChrome" not in stealth_request["sec-ch-ua"]
    assert "HeadlessChrome" in plain_request["user-agent"]
    assert extracted(placed)["timezone"] == "Europe/Berlin"
    assert extracted(placed)["language"] == "de-DE"


async def test_agent_locale_and_timezone_are_validated(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    bad_locale = await client.post(
        "/v1/agents", json={"name": "bad-locale", "locale": "Deutsch"}, headers=auth
    )
    assert_error(bad_locale, 422, "invalid_locale")
    bad_zone = await client.post(
        "/v1/agents", json={"name": "bad-zone", "timezone": "Europe/Atlantis"}, headers=auth
    )
    assert_error(bad_zone, 422, "invalid_timezone")
    made = await agent(client, auth, stealth=True)
    patched = await client.patch(
        f"/v1/agents/{made}", json={"stealth": False, "locale": "en-GB"}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["stealth"], patched.json()["locale"]) == (False, "en-GB")

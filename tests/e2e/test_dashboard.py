"""The dashboard in Chromium (Playwright) against a real API process and a real worker: sign
in (a wrong key refused), a job seen going from queued to succeeded without a reload, Cancel, a
failed job's error and attempts, Retry, numbers equal to the API's, the event stream resuming
with Last-Event-ID after an API restart, no console error or CSP violation, and the key in no
URL. Then the headers and the static files, without a browser."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    expect,
)

from shared.queue import create_redis, set_paused
from shared.settings import Settings
from shared.specs import JOB_KINDS
from tests.e2e.cluster import Cluster, bearer
from tests.e2e.conftest import StartCluster
from tests.e2e.dashboard_support import Watch, confirm, sign_in
from tests.helpers import TargetServer, http_job, wait_for_job

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).resolve().parents[2] / "api" / "dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
WAIT_MS = 15_000
# Each change of a job row's status, in order (attribute records keep the value replaced).
# Recording again starts afresh: the previous observer stops, or it would record every change
# a second time (a batch of changes twice reads as the statuses going round again).
RECORD_STATUSES = """() => {
  window.__statusObserver?.disconnect();
  window.__statuses = [];
  window.__statusObserver = new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") window.__statuses.push([r.target.dataset.jobId, r.oldValue]);
    }
  });
  window.__statusObserver.observe(document.querySelector("#jobs tbody"),
    {subtree: true, attributes: true, attributeFilter: ["data-status"], attributeOldValue: true});
}"""
STATUS_HISTORY = """(id) => {
  const seen = window.__statuses.filter(([jobId]) => jobId === id).map(([, s]) => s);
  const row = document.querySelector(`#jobs tr[data-job-id="${id}"]`);
  if (row) seen.push(row.dataset.status);
  return seen.filter((s, i) => i === 0 || s !== seen[i - 1]);
}"""


def _row(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs tr[data-job-id="{job_id}"]')


async def _submit(api: httpx.AsyncClient, headers: dict[str, str], spec: dict[str, Any]) -> str:
    response = await api.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def _page_queue(page: Page, name: str) -> dict[str, Any]:
    """The numbers the page shows for a queue, read back under the API's field names."""
    row = page.locator(f'#queues tr[data-queue="{name}"]')
    shown: dict[str, Any] = {}
    for field_name in ("ready", "deferred", "running", "workers"):
        shown[field_name] = int(await row.locator(f'[data-field="{field_name}"]').inner_text())
    for group in ("completed", "failed"):
        cell = row.locator(f'[data-field="{group}"]')
        shown[group] = {
            window: int(await cell.locator(f'[data-window="{window}"]').inner_text())
            for window in ("1m", "5m", "60m")
        }
    return shown


async def _panels_match_api(page: Page, api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """The queue row and the workers the page shows are the API's (the page samples every
    few seconds, so wait for the sample after the last change)."""
    deadline = time.monotonic() + 15
    while True:
        body = (await api.get("/v1/queue", headers=headers)).json()
        queue = next(q for q in body["queues"] if q["name"] == "default")
        wanted = {key: queue[key] for key in ("ready", "deferred", "running", "workers")}
        wanted |= {key: queue[key] for key in ("completed", "failed")}
        shown = await _page_queue(page, "default")
        if shown == wanted or time.monotonic() > deadline:
            assert shown == wanted
            break
        await asyncio.sleep(0.5)
    workers = (await api.get("/v1/workers", headers=headers)).json()["workers"]
    shown_workers = await page.locator("#workers tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.workerId)"
    )
    assert shown_workers == [worker["id"] for worker in workers]
    assert await page.locator('#charts canvas[role="img"]').count() >= 1


async def _a_job_goes_from_queued_to_succeeded(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> None:
    await page.evaluate(RECORD_STATUSES)
    await page.evaluate("window.__sameDocument = true")
    # One worker slot: the other jobs wait, queued, behind the first.
    blocker = await _submit(api, headers, http_job(target.url("/slow?s=2")))
    watched = await _submit(api, headers, http_job(target.url("/slow?s=0.5")))
    doomed = await _submit(api, headers, http_job(target.url("/ok")))
    row = _row(page, watched)
    await expect(row).to_have_attribute("data-status", "queued", timeout=WAIT_MS)
    await _row(page, doomed).get_by_role("button", name="Cancel").click()
    await confirm(page)
    await expect(_row(page, doomed)).to_have_attribute("data-status", "cancelled")
    await expect(_row(page, doomed).get_by_role("button", name="Retry")).to_be_visible()
    assert (await wait_for_job(api, headers, doomed))["status"] == "cancelled"
    await expect(row).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    assert await page.evaluate(STATUS_HISTORY, watched) == ["queued", "running", "succeeded"]
    done = await wait_for_job(api, headers, watched)
    await expect(row.locator('[data-field="attempts"]')).to_have_text(
        f"{done['attempts']} / {done['max_attempts']}"
    )
    await expect(row.locator('[data-field="finished_at"] time')).to_have_attribute(
        "datetime", done["finished_at"]
    )
    await expect(_row(page, blocker)).to_have_attribute("data-status", "succeeded")
    await expect(_row(page, doomed)).to_have_attribute("data-status", "cancelled")
    assert target.hits["/ok"] == 0
    assert await page.evaluate("window.__sameDocument") is True  # never reloaded


async def _a_failed_job_is_retried(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> None:
    path = f"/flaky/{uuid.uuid4().hex}"  # 404 once, then 200
    spec = {**http_job(target.url(f"{path}?fail=1&status=404")), "max_attempts": 1}
    failing = await _submit(api, headers, spec)
    failed = await wait_for_job(api, headers, failing)
    assert failed["status"] == "failed"
    row = _row(page, failing)
    await expect(row).to_have_attribute("data-status", "failed", timeout=WAIT_MS)
    await expect(row.locator('[data-part="code"]')).to_have_text(failed["error"]["code"])
    await expect(row.locator('[data-part="message"]')).to_have_text(failed["error"]["message"])
    await expect(row.locator('[data-field="attempts"]')).to_have_text("1 / 1")
    await expect(row.get_by_role("button", name="Cancel")).to_have_count(0)

    # The failed filter lists what the API lists; Retry runs the job again, live.
    await page.locator("#job-statuses").get_by_label("failed").check()
    listed = (await api.get("/v1/jobs", params={"status": "failed"}, headers=headers)).json()
    ids = [job["id"] for job in listed["items"]]
    await expect(page.locator("#jobs tbody tr")).to_have_count(len(ids))
    shown = await page.locator("#jobs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)"
    )
    assert shown == ids == [failing]
    await page.evaluate(RECORD_STATUSES)
    await row.get_by_role("button", name="Retry").click()
    await confirm(page)
    await expect(row).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    assert await page.evaluate(STATUS_HISTORY, failing) == [
        "failed",
        "queued",
        "running",
        "succeeded",
    ]
    again = await wait_for_job(api, headers, failing)
    assert again["status"] == "succeeded"
    assert target.hits[path] == 2
    await expect(row.locator('[data-field="attempts"]')).to_have_text(
        f"{again['attempts']} / {again['max_attempts']}"
    )
    await expect(row.locator('[data-field="error"]')).to_have_text("\u2014")
    await expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    await page.locator("#job-statuses").get_by_label("failed").uncheck()


async def _the_stream_resumes_after_an_api_restart(
    page: Page,
    cluster: Cluster,
    api: httpx.AsyncClient,
    headers: dict[str, str],
    target: TargetServer,
    watch: Watch,
) -> None:
    job_id = await _submit(api, headers, http_job(target.url("/slow?s=1.5")))
    row = _row(page, job_id)
    await expect(row).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    connects = len(watch.stream_requests())
    succeeded = cluster.log_events("worker-0")["job.succeeded"]
    watch.phase = "outage"
    cluster.procs["api"].kill()
    cluster.procs["api"].wait()
    await expect(page.locator("#live")).to_have_attribute(
        "data-state", re.compile("reconnecting|connecting"), timeout=WAIT_MS
    )
    while cluster.log_events("worker-0")["job.succeeded"] == succeeded:  # finished meanwhile
        await asyncio.sleep(0.1)
    cluster.start("api-2", "api", "--host", "127.0.0.1", "--port", str(cluster.api_port))
    await expect(page.locator("#live")).to_have_text("live", timeout=30_000)
    await expect(row).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    watch.phase = "normal"
    resumed = watch.stream_requests()[connects:]
    assert resumed
    assert all(re.fullmatch(r"\d+-\d+", h.get("last-event-id", "")) for h in resumed), resumed


async def test_the_dashboard_shows_jobs_live_and_retries_them(
    start_cluster: StartCluster, target: TargetServer, browser: Browser
) -> None:
    cluster = await start_cluster(workers=1, concurrency=1)
    key = await cluster.create_key(f"dash-{uuid.uuid4().hex[:8]}")
    headers = bearer(key)
    context = await browser.new_context()
    page = await context.new_page()
    watch = Watch()
    watch.attach(page)

    response = await page.goto(f"{cluster.api_url}/dashboard")
    assert response is not None
    assert response.ok
    assert response.headers["content-security-policy"] == CSP

    # A wrong key is refused and never kept.
    await sign_in(page, "ork_" + "x" * 43)
    await expect(page.locator("#sign-in-message")).to_have_text("That API key was refused.")
    await expect(page.locator("#app")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0

    await sign_in(page, key)
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    await expect(page.locator("#jobs-empty")).to_be_visible()
    assert await page.locator("#api-key").input_value() == ""

    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as api:
        await _a_job_goes_from_queued_to_succeeded(page, api, headers, target)
        await _a_failed_job_is_retried(page, api, headers, target)
        await _panels_match_api(page, api, headers)
        await _the_stream_resumes_after_an_api_restart(page, cluster, api, headers, target, watch)

    # Sign out: the key and the data leave the page.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#sign-in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.locator("#jobs tbody tr").count() == 0

    # A stored key that the API refuses (revoked, say) goes back to the sign-in form.
    await page.evaluate("sessionStorage.setItem('outrider.apiKey', 'ork_revoked')")
    await page.reload()
    await expect(page.locator("#sign-in-message")).to_have_text(
        "The API refused the key: Invalid API key.", timeout=WAIT_MS
    )
    assert await page.evaluate("sessionStorage.length") == 0

    assert await context.cookies() == []
    assert [url for url, _ in watch.requests if key in url or "ork_" in url] == []
    api_calls = [h for url, h in watch.requests if urlsplit(url).path.startswith("/v1/")]
    assert any(h.get("authorization") == f"Bearer {key}" for h in api_calls)
    assert watch.errors == []
    assert watch.unexpected_console() == []  # no CSP violation, no script error
    await context.close()


async def test_the_queue_panel_shows_a_paused_queue_and_the_kind_filter_has_every_kind(
    start_cluster: StartCluster, browser: Browser, settings: Settings
) -> None:
    cluster = await start_cluster(workers=1, concurrency=1)
    key = await cluster.create_key(f"dash-{uuid.uuid4().hex[:8]}")
    context = await browser.new_context()
    page = await context.new_page()
    watch = Watch()
    watch.attach(page)
    await page.goto(f"{cluster.api_url}/dashboard")
    await sign_in(page, key)
    await expect(page.locator("#app")).to_be_visible()

    # The kind filter offers every kind the server knows, and filters by it.
    options = await page.locator("#job-kind option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["", *JOB_KINDS]
    await page.locator("#job-kind").select_option("crawl")
    await expect(page.locator("#jobs-empty")).to_be_visible()
    assert any("kind=crawl" in url for url, _ in watch.requests)

    state = page.locator('#queues tr[data-queue="browser"] [data-field="paused"]')
    await expect(state).to_have_text("active", timeout=WAIT_MS)
    redis = create_redis(settings.resolved_redis_url, patient=False)
    try:
        await set_paused(redis, "browser", True)
        await expect(state).to_have_text("paused", timeout=WAIT_MS)  # the next 5 s sample
        await expect(page.locator('#queues tr[data-queue="browser"]')).to_have_attribute(
            "data-paused", "true"
        )
        await expect(
            page.locator('#queues tr[data-queue="default"] [data-field="paused"]')
        ).to_have_text("active")
        await set_paused(redis, "browser", False)
        await expect(state).to_have_text("active", timeout=WAIT_MS)
    finally:
        await set_paused(redis, "browser", False)
        await redis.aclose()
    assert watch.errors == []
    assert watch.unexpected_console() == []
    await context.close()


# --- without a browser ---------------------------------------------------------------------


async def test_dashboard_responses_carry_strict_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    script = await client.get("/dashboard/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    for response in (page, script):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    again = await client.get(
        "/dashboard/static/app.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
    for name in ("nope.js", "..%2Fapp.py", "index.html"):
        assert (await client.get(f"/dashboard/static/{name}")).status_code == 404
    assert "/dashboard" not in str((await client.get("/openapi.json")).json()["paths"])


async def test_every_file_the_page_loads_is_served(client: httpx.AsyncClient) -> None:
    html = (await client.get("/dashboard")).text
    refs = re.findall(r'(?:src|href)="(/[^"]+)"', html)  # not the page's own #/ links
    modules = {
        name
        for path in DASHBOARD.glob("*.js")
        for name in re.findall(r'from "\./([^"]+)"', path.read_text())
    }
    assert len(refs) == 3
    assert modules
    for ref in [*refs, *(f"/dashboard/static/{m}" for m in modules)]:
        assert (await client.get(ref)).status_code == 200, ref


def test_the_front_end_writes_no_markup_and_has_no_inline_code() -> None:
    """Data goes into the DOM as text only; CSP forbids inline code anyway, keep it absent."""
    for path in DASHBOARD.glob("*.js"):
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, (path.name, sink)
    html = (DASHBOARD / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert " style=" not in html
    assert "<style" not in html
    assert re.search(r"\bon[a-z]+=", html) is None

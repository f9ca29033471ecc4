"""The dashboard's job page and job list in Chromium against real processes (an API, a
default worker and a browser worker): a render job's page shows its result, screenshot,
attempts, live events and webhook deliveries; Cancel asks first; the list pages through 200
jobs as the API lists them, searches by id and URL, combines status filters and retries the
failed jobs in bulk; schedules pause, resume and run now; at 420 px nothing scrolls sideways."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.cluster import Cluster, bearer, wait_all_terminal
from tests.e2e.conftest import StartCluster
from tests.e2e.dashboard_support import Watch, confirm, sign_in
from tests.helpers import TargetServer, http_job, wait_for_job
from tests.pages_server import start_pages_server

pytestmark = pytest.mark.e2e

WAIT_MS = 20_000
PAGE_ROWS = "#jobs tbody tr"


async def _submit(api: httpx.AsyncClient, headers: dict[str, str], spec: dict[str, Any]) -> str:
    response = await api.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def _shown_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator(PAGE_ROWS).evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)"
    )
    return ids


async def _no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, width


async def _a_render_jobs_page(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> str:
    async with start_pages_server() as pages:
        url = pages.url("/pages/blog_post")
        spec = {
            "kind": "render",
            "input": {"url": url, "screenshot": {}, "formats": ["markdown", "links"]},
            "webhook_url": target.url("/ok?hook=1"),
        }
        job_id = await _submit(api, headers, spec)
        await _the_job_page_tells_its_story(page, api, headers, job_id)
    await expect(page.locator('#job-body [data-part="summary"] [data-field="url"]')).to_have_text(
        url
    )
    return job_id


async def _the_job_page_tells_its_story(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], job_id: str
) -> None:
    await page.locator(f'#jobs tr[data-job-id="{job_id}"] a[data-part="link"]').click()
    assert page.url.endswith(f"#/jobs/{job_id}")
    await expect(page.locator("#job-id")).to_have_text(job_id)
    body = page.locator("#job-body")
    await expect(body).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    job = await wait_for_job(api, headers, job_id)
    attempts = (await api.get(f"/v1/jobs/{job_id}/attempts", headers=headers)).json()["items"]

    result = body.locator('[data-part="result"]')
    await expect(result.locator('details[data-key="markdown"] pre')).to_have_text(
        job["result"]["markdown"]
    )
    await expect(result.locator('details[data-key="links"]')).not_to_have_attribute("open", "")
    shot = result.locator('figure[data-key="screenshot"] img')
    await expect(shot).to_have_attribute("src", re.compile(r"^blob:"))
    assert await shot.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert (
        await result.locator("figure").get_attribute("data-artifact-id")
        == (job["result"]["screenshot"]["artifact_id"])
    )

    timeline = body.locator('[data-part="attempts"] li')
    await expect(timeline).to_have_count(len(attempts))
    await expect(timeline.first.locator('[data-field="outcome"]')).to_have_text("succeeded")
    await expect(timeline.first.locator('[data-field="worker"]')).to_have_text(
        attempts[0]["worker_id"]
    )
    await expect(body.locator('#job-events li[data-type="succeeded"]')).to_have_count(1)
    # The delivery is made after the job's last event: the page reads it again while it is
    # pending, until it is delivered.
    row = body.locator('[data-part="deliveries"] tbody tr')
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    await expect(row).to_have_attribute("data-status", "delivered", timeout=WAIT_MS)
    await expect(body.locator('[data-part="events"] .stream-state')).to_have_text(
        "(the job has ended)"
    )
    await expect(row.locator('[data-field="event"]')).to_have_text("job.succeeded")


async def _cancel_asks_first(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> None:
    job_id = await _submit(api, headers, http_job(target.url("/slow?s=8")))
    await page.evaluate(f"location.hash = '#/jobs/{job_id}'")
    body = page.locator("#job-body")
    await expect(body).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    await body.get_by_role("button", name="Cancel").click()
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text(job_id)
    await dialog.get_by_role("button", name="Back").click()
    await expect(dialog).to_be_hidden()
    assert (await api.get(f"/v1/jobs/{job_id}", headers=headers)).json()["status"] == "running"
    await body.get_by_role("button", name="Cancel").click()
    await confirm(page)
    await expect(body).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
    assert (await wait_for_job(api, headers, job_id))["status"] == "cancelled"
    await expect(body.locator('#job-events li[data-type="cancelled"]')).to_have_count(1)
    await expect(body.get_by_role("button", name="Retry")).to_be_visible()


async def _pages_through_200_jobs(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> list[str]:
    tag = f"p{uuid.uuid4().hex[:10]}"
    specs = [http_job(target.url(f"/ok?{tag}={n}")) for n in range(200)]
    created = await api.post("/v1/jobs/batch", json={"jobs": specs}, headers=headers)
    assert created.status_code == 202, created.text
    ids = [job["id"] for job in created.json()["jobs"]]
    await wait_all_terminal(api, headers, ids, timeout_s=60)
    listed: list[str] = []
    cursor = None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        body = (await api.get("/v1/jobs", params=params, headers=headers)).json()
        listed += [job["id"] for job in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break

    await page.evaluate("location.hash = '#/'")
    await page.locator("#jobs-reload").click()
    shown: list[str] = []
    for number in range(1, 100):
        await expect(page.locator("#jobs-page")).to_have_text(f"page {number}")
        await expect(page.locator(PAGE_ROWS).first).to_have_attribute(
            "data-job-id", listed[len(shown)]
        )
        shown += await _shown_ids(page)
        older = page.locator("#jobs-older")
        if await older.is_disabled():
            break
        await older.click()
    assert shown == listed
    assert set(ids) <= set(shown)
    await page.locator("#jobs-newer").click()
    await expect(page.locator("#jobs-page")).to_have_text(f"page {number - 1}")
    await expect(page.locator(PAGE_ROWS).first).to_have_attribute(
        "data-job-id", listed[(number - 2) * 50]
    )
    await page.locator("#jobs-newest").click()
    await expect(page.locator("#jobs-page")).to_have_text("page 1")

    # Search: a piece of one URL, then a full id.
    await page.locator("#job-q").fill(f"{tag.upper()}=137")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator(PAGE_ROWS)).to_have_count(1)
    assert await _shown_ids(page) == [ids[137]]
    await page.locator("#job-q").fill(ids[3])
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator(PAGE_ROWS).first).to_have_attribute("data-job-id", ids[3])
    await expect(page.locator(PAGE_ROWS)).to_have_count(1)
    await page.locator("#job-q").fill("")
    await page.get_by_role("button", name="Search").click()
    return ids


async def _filters_and_bulk_retry(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> None:
    agent = await api.post("/v1/agents", json={"name": "bulk-agent"}, headers=headers)
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    failing = []
    for _ in range(3):
        spec = {**http_job(target.url("/status/404?bulk=1")), "max_attempts": 1}
        failing.append(await _submit(api, headers, {**spec, "agent_id": agent_id}))
    for job_id in failing:
        assert (await wait_for_job(api, headers, job_id))["status"] == "failed"
    await page.reload()  # the agent filter lists the agents there were at sign-in
    await page.locator("#job-agent").select_option(label="bulk-agent")
    await expect(page.locator(PAGE_ROWS)).to_have_count(3)
    assert await _shown_ids(page) == failing[::-1]
    # The full id on hover, and copied by the row's Copy button.
    first = page.locator(PAGE_ROWS).first
    await expect(first.locator('a[data-part="link"]')).to_have_attribute("title", failing[2])
    await first.get_by_role("button", name=f"Copy {failing[2]}").click()
    assert await page.evaluate("navigator.clipboard.readText()") == failing[2]
    await page.locator("#job-agent").select_option("")
    statuses = page.locator("#job-statuses")
    await statuses.get_by_label("failed").check()
    await statuses.get_by_label("cancelled").check()
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("status", "failed"),
        ("status", "cancelled"),
        ("limit", 50),
    ]
    wanted = [
        j["id"] for j in (await api.get("/v1/jobs", params=params, headers=headers)).json()["items"]
    ]
    await expect(page.locator(PAGE_ROWS)).to_have_count(len(wanted))
    assert await _shown_ids(page) == wanted
    assert len(wanted) >= 4  # the failed ones and the cancelled one
    # The filtered list is a link: loaded again, it shows the same jobs.
    assert page.url.endswith("#/?status=failed&status=cancelled")
    await page.reload()
    await expect(statuses.get_by_label("cancelled")).to_be_checked()
    await expect(page.locator(PAGE_ROWS)).to_have_count(len(wanted))
    assert await _shown_ids(page) == wanted

    await page.locator("#job-q").fill("bulk=1")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator(PAGE_ROWS)).to_have_count(3)
    await page.get_by_role("button", name="Retry failed…").click()
    await expect(page.locator("dialog#confirm")).to_contain_text("bulk=1")
    await confirm(page)
    await expect(page.locator("#notice")).to_have_text("Retried 3 failed jobs.")
    for job_id in failing:
        job = await wait_for_job(api, headers, job_id)
        assert (job["status"], job["attempts"]) == ("failed", 1)
        attempts = (await api.get(f"/v1/jobs/{job_id}/attempts", headers=headers)).json()
        assert len(attempts["items"]) == 2  # it ran again
    await page.locator("#job-q").fill("")
    await page.get_by_role("button", name="Search").click()
    await statuses.get_by_label("failed").uncheck()
    await statuses.get_by_label("cancelled").uncheck()


async def _schedules_pause_resume_and_run(
    page: Page, api: httpx.AsyncClient, headers: dict[str, str], target: TargetServer
) -> None:
    spec = {"cron": "0 0 1 1 *", "job": http_job(target.url("/ok?scheduled=1"))}
    created = await api.post("/v1/schedules", json=spec, headers=headers)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    await page.reload()  # the panel reads schedules every 30 s; a reload reads them now
    row = page.locator(f'#schedules tr[data-schedule-id="{schedule_id}"]')
    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_have_attribute("data-enabled", "no")
    assert (await api.get(f"/v1/schedules/{schedule_id}", headers=headers)).json()[
        "enabled"
    ] is False
    await row.get_by_role("button", name="Resume").click()
    await expect(row).to_have_attribute("data-enabled", "yes")
    assert (await api.get(f"/v1/schedules/{schedule_id}", headers=headers)).json()[
        "enabled"
    ] is True
    await row.get_by_role("button", name="Run now").click()
    await confirm(page)
    link = page.locator('#notice a[data-part="link"]')
    await expect(link).to_be_visible()
    runs = (await api.get(f"/v1/schedules/{schedule_id}/runs", headers=headers)).json()["items"]
    assert len(runs) == 1
    assert (await link.get_attribute("href")) == f"#/jobs/{runs[0]['job_id']}"
    await link.click()
    schedule_link = page.locator('#job-body a[data-part="schedule"]')
    await expect(schedule_link).to_have_attribute("href", f"#/schedules/{schedule_id}")
    await schedule_link.click()
    await expect(row).to_have_class("marked")


async def _narrow(page: Page, job_id: str) -> None:
    await page.set_viewport_size({"width": 420, "height": 900})
    await page.evaluate("location.hash = '#/'")
    await expect(page.locator("#jobs")).to_be_visible()
    await _no_sideways_scroll(page)
    await page.evaluate(f"location.hash = '#/jobs/{job_id}'")
    await expect(page.locator('#job-body [data-part="result"]')).to_be_visible()
    await _no_sideways_scroll(page)
    table = page.locator('#job-body [data-part="deliveries"] .scroll')
    assert await table.evaluate("e => e.scrollWidth > e.clientWidth")  # it scrolls in its box


async def test_a_jobs_whole_story_and_the_list_in_the_dashboard(
    start_cluster: StartCluster, target: TargetServer, browser: Browser
) -> None:
    cluster: Cluster = await start_cluster(workers=1, concurrency=20)
    cluster.start_worker(1, "browser")
    await cluster.wait_workers()
    key = await cluster.create_key(f"dash-{uuid.uuid4().hex[:8]}")
    headers = bearer(key)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cluster.api_url)
    page = await context.new_page()
    watch = Watch()
    watch.attach(page)
    await page.goto(f"{cluster.api_url}/dashboard")
    await sign_in(page, key)
    await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)

    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as api:
        render_id = await _a_render_jobs_page(page, api, headers, target)
        await _cancel_asks_first(page, api, headers, target)
        await _pages_through_200_jobs(page, api, headers, target)
        await _filters_and_bulk_retry(page, api, headers, target)
        await _schedules_pause_resume_and_run(page, api, headers, target)
        await _narrow(page, render_id)

    assert watch.errors == []
    assert watch.unexpected_console() == []  # no CSP violation (the screenshot is a blob:)
    await context.close()

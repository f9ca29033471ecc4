"""The `crawl` kind end to end, in-process: a generated site on loopback, a worker, the API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import RunWorker
from tests.crawl_site import CrawlSite, serve_site
from tests.helpers import wait_for_job
from tests.worker.support import submit

FAST = {"host_rate_per_s": 1000, "host_concurrency": 50}


async def fast_agent(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await client.post("/v1/agents", json={"name": "crawler", **FAST}, headers=auth)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def all_pages(
    client: httpx.AsyncClient, auth: dict[str, str], crawl_id: str, **params: Any
) -> list[dict[str, Any]]:
    """Every page of the crawl, following cursors (small pages: the cursor is exercised)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 7, **params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/v1/jobs/{crawl_id}/pages", params=query, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def path_of(site: CrawlSite, url: str) -> str:
    return url.removeprefix(site.base_url) or "/"


async def crawl(
    client: httpx.AsyncClient, auth: dict[str, str], site: CrawlSite, **fields: Any
) -> str:
    agent_id = await fast_agent(client, auth)
    spec = {"kind": "crawl", "agent_id": agent_id, "input": {"url": site.url("/"), **fields}}
    return await submit(client, auth, spec)


async def test_crawl_reaches_what_bfs_reaches_once_each(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with serve_site(pages=40) as site, run_worker(concurrency=8):
        crawl_id = await crawl(client, auth, site, max_depth=3, sitemap="skip")
        job = await wait_for_job(client, auth, crawl_id, timeout_s=60)
        pages = await all_pages(client, auth, crawl_id)

    assert job["status"] == "succeeded", job
    expected = site.bfs(3)
    succeeded = {path_of(site, p["url"]): p for p in pages if p["status"] == "succeeded"}
    assert set(succeeded) == set(expected)
    assert all(succeeded[path]["depth"] == depth for path, depth in expected.items())
    # Every page fetched once: other spellings of a URL are one page, robots.txt is obeyed.
    assert all(site.hits[path] == 1 for path in expected), site.hits
    assert not any(path.startswith("/private/") for path in site.hits)
    skipped = {p["skipped_because"] for p in pages if p["status"] == "skipped"}
    assert {"robots", "external", "depth", "duplicate"} <= skipped
    robots = [p for p in pages if p["skipped_because"] == "robots"]
    assert robots
    # Skipped from the cached robots.txt without a job, or refused by the page job's own check.
    assert len([p for p in robots if p["job_id"] is None]) >= len(robots) - 1
    # A redirect lands on a page the crawl has: a duplicate, never fetched twice.
    old = [p for p in pages if "/old/" in p["url"]]
    assert old
    assert all(p["status"] in ("skipped", "succeeded") for p in old)
    counts = job["result"]["pages"]
    assert counts["succeeded"] == len(expected)
    assert counts["queued"] == counts["running"] == 0
    assert counts["discovered"] == len(pages)
    # Each page is a job of its own, listed under its crawl.
    listed = await client.get(
        "/v1/jobs", params={"parent_id": crawl_id, "limit": 500}, headers=auth
    )
    jobs = listed.json()["items"]
    assert {j["kind"] for j in jobs} == {"fetch"}
    assert all(j["parent_id"] == crawl_id for j in jobs)
    with_result = await all_pages(client, auth, crawl_id, status="succeeded", include="result")
    doc = next(p for p in with_result if p["url"].endswith("/docs/0"))
    assert doc["result"]["markdown"].startswith("# Document 0")


async def test_sitemap_seeds_and_limit(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with serve_site(pages=30) as site, run_worker(concurrency=8):
        crawl_id = await crawl(client, auth, site, max_depth=2, limit=12)
        job = await wait_for_job(client, auth, crawl_id, timeout_s=60)
        pages = await all_pages(client, auth, crawl_id)

    assert job["status"] == "succeeded", job
    counts = job["result"]["pages"]
    assert counts["succeeded"] + counts["failed"] == 12
    assert counts["skipped"]["limit"] > 0
    from_sitemap = [p for p in pages if (p["found_on"] or "").endswith((".xml", ".xml.gz"))]
    assert {path_of(site, p["url"]) for p in from_sitemap} >= {"/extra/0", "/docs/29"}
    # A sitemap URL is as deep as its path: /docs/29 is 2 below /.
    assert all(p["depth"] == 2 for p in from_sitemap)
    assert sum(site.hits[p] for p in site.hits if p.startswith(("/docs/", "/extra/"))) <= 12


async def test_bad_crawl_input_is_refused_before_any_request(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    cases: dict[str, dict[str, Any]] = {
        "invalid_pattern": {"include_paths": ["docs/*"]},
        "max_depth_out_of_range": {"max_depth": 21},
        "limit_too_large": {"limit": 100_001},
        "page_url_not_allowed": {"page": {"url": "http://127.0.0.1/"}},
    }
    for code, fields in cases.items():
        spec = {"kind": "crawl", "input": {"url": "http://127.0.0.1:9/", **fields}}
        response = await client.post("/v1/jobs", json=spec, headers=auth)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code


async def test_a_refused_start_url_fails_the_crawl_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with run_worker():
        spec = {"kind": "crawl", "input": {"url": "http://169.254.169.254/latest/"}}
        crawl_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, crawl_id, timeout_s=20)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "blocked_destination"


async def test_cancel_stops_the_crawl_and_retry_resumes_it(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with serve_site(pages=30, delay_s=0.3) as site, run_worker(concurrency=4):
        crawl_id = await crawl(client, auth, site, max_depth=4, sitemap="skip")
        for _ in range(200):
            job = (await client.get(f"/v1/jobs/{crawl_id}", headers=auth)).json()
            if (job.get("result") or {}).get("pages", {}).get("succeeded", 0) >= 3:
                break
            await asyncio.sleep(0.05)
        cancelled = await client.post(f"/v1/jobs/{crawl_id}/cancel", headers=auth)
        assert cancelled.status_code == 200, cancelled.text
        listed = await client.get("/v1/jobs", params={"parent_id": crawl_id}, headers=auth)
        live = [j for j in listed.json()["items"] if j["status"] in ("queued", "running")]
        assert live == []
        retried = await client.post(f"/v1/jobs/{crawl_id}/retry", headers=auth)
        assert retried.status_code == 200, retried.text
        job = await wait_for_job(client, auth, crawl_id, timeout_s=60)
        pages = await all_pages(client, auth, crawl_id, status="succeeded")

    assert job["status"] == "succeeded", job
    assert {path_of(site, p["url"]) for p in pages} == set(site.bfs(4))


async def test_the_reconciler_settles_pages_a_dead_worker_left(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every page's outcome is written but its worker 'dies' before settling it: the crawl
    still ends, through the reconciler alone, with every page expanded once."""

    async def dies_first(*_: Any, **__: Any) -> None:
        raise ConnectionResetError("the worker died between the two writes")

    monkeypatch.setattr("worker.runner.settle_page", dies_first)
    async with serve_site(pages=15) as site, run_worker(concurrency=4):
        crawl_id = await crawl(client, auth, site, max_depth=2, sitemap="skip")
        job = await wait_for_job(client, auth, crawl_id, timeout_s=60)
        pages = await all_pages(client, auth, crawl_id)

    assert job["status"] == "succeeded", job
    succeeded = {path_of(site, p["url"]) for p in pages if p["status"] == "succeeded"}
    assert succeeded == set(site.bfs(2))
    assert all(site.hits[path] == 1 for path in succeeded)
    urls = [p["url"] for p in pages]
    assert len(urls) == len(set(urls))

"""The `map` kind: a site's URLs from its sitemaps and links, without page content."""

from __future__ import annotations

import httpx

from tests.conftest import RunWorker
from tests.crawl_site import EXTRA_PAGES, serve_site
from tests.helpers import wait_for_job
from tests.worker.support import submit
from tests.worker.test_crawl import fast_agent


async def test_map_lists_the_sitemap_and_the_links(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with serve_site(pages=20) as site, run_worker():
        agent_id = await fast_agent(client, auth)
        spec = {
            "kind": "map",
            "agent_id": agent_id,
            "input": {"url": site.url("/"), "max_depth": 1, "search": "extra"},
        }
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)

    assert job["status"] == "succeeded", job
    urls = job["result"]["urls"]
    by_url = {u["url"]: u for u in urls}
    assert len(by_url) == len(urls)
    sitemap = {site.url(f"/docs/{i}") for i in range(20)}
    sitemap |= {site.url(f"/extra/{k}") for k in range(EXTRA_PAGES)}
    assert sitemap <= set(by_url)
    assert all(by_url[u]["source"] == "sitemap" and by_url[u]["lastmod"] for u in sitemap)
    # Links of the start page and of the pages it links to (depth 1), robots.txt obeyed.
    assert by_url[site.url("/")]["source"] == "links"
    assert site.url("/old/1") in by_url
    assert not any("/private/" in u for u in site.hits)
    # `search` first.
    first = [u["url"] for u in urls[:EXTRA_PAGES]]
    assert all("/extra/" in u for u in first)
    # No page content was converted or kept.
    assert set(urls[0]) <= {"url", "source", "lastmod"}


async def test_map_follows_links_within_the_hosts_limits(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    """Several pages in flight, but never more than the agent's host concurrency (shared by
    every job of the host); every page a
    breadth-first search reaches within the depth is listed, nothing deeper is requested, and
    the list does not depend on which page answered first."""
    async with serve_site(pages=40, delay_s=0.05) as site, run_worker():
        response = await client.post(
            "/v1/agents",
            json={"name": "mapper", "host_rate_per_s": 1000, "host_concurrency": 2},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        spec = {
            "kind": "map",
            "agent_id": response.json()["id"],
            "input": {"url": site.url("/"), "max_depth": 3, "sitemap": "skip"},
        }
        # Two maps of one host at once: the host's limit holds for both together.
        ids = [await submit(client, auth, spec) for _ in range(2)]
        first, again = [await wait_for_job(client, auth, job_id, timeout_s=60) for job_id in ids]

    assert first["status"] == "succeeded", first
    urls = [u["url"] for u in first["result"]["urls"]]
    assert urls == [u["url"] for u in again["result"]["urls"]]
    reached = site.bfs(3)
    assert {site.url(path) for path in reached} <= set(urls)
    fetched_docs = {path for path in site.hits if path.startswith("/docs/")}
    assert fetched_docs == {path for path in reached if path.startswith("/docs/")}
    assert site.peak_in_flight <= 2

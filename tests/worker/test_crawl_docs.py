"""A crawl of real HTML nobody here wrote (Debian's Django manual, on loopback) against a plain
breadth-first search of the same site."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunWorker
from tests.docs_site import DJANGO, serve_docs
from tests.helpers import wait_for_job
from tests.worker.support import submit
from tests.worker.test_crawl import all_pages, fast_agent

pytestmark = pytest.mark.skipif(not DJANGO.is_dir(), reason="needs `make debian-docs`")


async def test_docs_crawl_matches_a_plain_bfs(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with serve_docs(disallow="/_modules/") as site, run_worker(concurrency=8):
        agent_id = await fast_agent(client, auth)
        spec = {
            "kind": "crawl",
            "agent_id": agent_id,
            "input": {"url": site.base_url + "/index.html", "max_depth": 1, "sitemap": "skip"},
        }
        crawl_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, crawl_id, timeout_s=240)
        pages = await all_pages(client, auth, crawl_id, limit=500)

    assert job["status"] == "succeeded", job
    expected = {p for p in site.bfs(1) if p.endswith(".html")}
    by_path = {p["url"].removeprefix(site.base_url): p for p in pages}
    succeeded = {path for path, p in by_path.items() if p["status"] == "succeeded"}
    missing = {path: by_path.get(path) for path in expected - succeeded}
    assert len(expected & succeeded) / len(expected) >= 0.98, missing
    assert not [path for path in site.hits if path.startswith("/_modules/")]
    assert max(site.hits.values()) == 1

"""A crawl of a real documentation site survives a worker SIGKILLed mid-crawl: another worker
is started, the crawl finishes, every page a breadth-first search reaches within the depth
succeeded exactly once, robots.txt was obeyed, and only the killed worker's pages were
fetched twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.docs_site import DJANGO, serve_docs
from tests.e2e.cluster import bearer
from tests.e2e.conftest import StartCluster

pytestmark = pytest.mark.e2e

DEPTH = 2
CONCURRENCY = 4


async def _pages(client: httpx.AsyncClient, headers: dict[str, str], crawl_id: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        body = (
            await client.get(f"/v1/jobs/{crawl_id}/pages", params=params, headers=headers)
        ).json()
        items += body["items"]
        if (cursor := body["next_cursor"]) is None:
            return items


async def _wait_for_progress(
    client: httpx.AsyncClient, headers: dict[str, str], crawl_id: str, succeeded: int
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/jobs/{crawl_id}", headers=headers)).json()
        if ((job.get("result") or {}).get("pages") or {}).get("succeeded", 0) >= succeeded:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the crawl made no progress: {job}")


@pytest.mark.skipif(not DJANGO.is_dir(), reason="Debian's Django manual: run `make debian-docs`")
async def test_crawl_survives_a_killed_worker(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(workers=2, concurrency=CONCURRENCY)
    live = await cluster.wait_workers()
    headers = bearer(await cluster.create_key(f"crawl-kill-{uuid.uuid4().hex[:8]}"))
    async with (
        serve_docs(disallow="/releases/") as site,
        httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as client,
    ):
        agent = {"name": "docs", "host_rate_per_s": 500, "host_concurrency": 50}
        agent_id = (await client.post("/v1/agents", json=agent, headers=headers)).json()["id"]
        spec = {
            "kind": "crawl",
            "agent_id": agent_id,
            "input": {"url": site.base_url + "/index.html", "max_depth": DEPTH},
        }
        response = await client.post("/v1/jobs", json=spec, headers=headers)
        assert response.status_code == 202, response.text
        crawl_id = response.json()["id"]

        await _wait_for_progress(client, headers, crawl_id, succeeded=40)
        victim = next(iter(live))
        os.kill(victim, signal.SIGKILL)
        cluster.start_worker(CONCURRENCY)

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            job = (await client.get(f"/v1/jobs/{crawl_id}", headers=headers)).json()
            if job["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.5)
        pages = await _pages(client, headers, crawl_id)
        sample = [p for p in pages if p["status"] == "succeeded"][::25]
        results = {}
        for page in sample:
            got = (await client.get(f"/v1/jobs/{page['job_id']}", headers=headers)).json()
            results[page["url"]] = got["result"]

    assert job["status"] == "succeeded", job
    expected = {path: d for path, d in site.bfs(DEPTH).items() if path.endswith(".html")}
    succeeded = {
        p["url"].removeprefix(site.base_url): p for p in pages if p["status"] == "succeeded"
    }
    recall = len(expected.keys() & succeeded.keys()) / len(expected)
    assert recall >= 0.98, sorted(expected.keys() - succeeded.keys())[:20]
    assert all(p["depth"] <= DEPTH for p in pages if p["status"] == "succeeded")
    assert not [path for path in site.hits if path.startswith("/releases/")]
    page_hits = {path: n for path, n in site.hits.items() if path != "/robots.txt"}
    fetched_twice = [path for path, n in page_hits.items() if n == 2]
    assert max(page_hits.values()) <= 2, sorted(page_hits.items(), key=lambda i: -i[1])[:5]
    assert len(fetched_twice) <= CONCURRENCY, fetched_twice
    # Each page has one job, and it succeeded once.
    job_ids = [p["job_id"] for p in succeeded.values()]
    assert len(set(job_ids)) == len(job_ids)
    for url, result in results.items():  # the page's <h1> kept as a heading
        assert any(line.startswith("# ") for line in result["markdown"].splitlines()), url
    beyond = set(succeeded) - set(expected)
    print(
        f"{len(succeeded)} pages; BFS {len(expected)}; recall {recall:.3f}; "
        f"beyond the BFS depth {len(beyond)}; fetched twice {len(fetched_twice)}"
    )

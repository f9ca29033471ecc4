"""GET /v1/usage: the caller's jobs, pages and bytes by UTC day and kind, end to end."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx

from tests.api.support import assert_error
from tests.conftest import NewOwner, RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job
from tests.pages_server import PAGES, start_pages_server


async def test_usage_counts_the_callers_jobs_pages_and_bytes(
    client: httpx.AsyncClient,
    new_owner: NewOwner,
    run_worker: RunWorker,
    target: TargetServer,
) -> None:
    auth, other = await new_owner(), await new_owner()
    empty = (await client.get("/v1/usage", headers=auth)).json()
    async with start_pages_server() as pages, run_worker():
        specs = [
            {"kind": "fetch", "input": {"url": pages.url("/pages/blog_post")}},
            {"kind": "fetch", "input": {"url": pages.url("/pages/blog_post")}},
            http_job(target.url("/ok")),
            {**http_job(target.url("/status/404")), "max_attempts": 1},
        ]
        batch = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
        await client.post("/v1/jobs/batch", json={"jobs": specs[:1]}, headers=other)
        done = [await wait_for_job(client, auth, job["id"]) for job in batch.json()["jobs"]]
    usage = await client.get("/v1/usage", headers=auth)

    assert empty["days"] == []
    assert empty["totals"]["jobs"] == 0
    today = datetime.now(UTC).date()
    assert empty["end"] == today.isoformat()
    assert empty["start"] == (today - timedelta(days=29)).isoformat()
    assert [job["status"] for job in done] == ["succeeded", "succeeded", "succeeded", "failed"]
    page_bytes = 2 * len((PAGES / "blog_post.html").read_bytes())
    call_bytes = done[2]["result"]["body_bytes"]
    assert call_bytes > 0
    body = usage.json()
    rows = {(row["day"], row["kind"]): row for row in body["days"]}
    fetch, http = rows[(today.isoformat(), "fetch")], rows[(today.isoformat(), "http")]
    assert (fetch["jobs"], fetch["succeeded"], fetch["pages"]) == (2, 2, 2)
    assert fetch["bytes_fetched"] == page_bytes
    assert (http["jobs"], http["succeeded"], http["failed"], http["pages"]) == (2, 1, 1, 0)
    assert http["bytes_fetched"] == call_bytes
    assert body["totals"] == {
        "jobs": 4, "succeeded": 3, "failed": 1, "pages": 2,
        "bytes_fetched": page_bytes + call_bytes, "browser_seconds": 0.0,
    }  # fmt: skip


async def test_usage_ranges(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.post("/v1/jobs", json=http_job("http://127.0.0.1:9/"), headers=auth)
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()

    async def usage(**params: str) -> httpx.Response:
        return await client.get("/v1/usage", params=params, headers=auth)

    before = (await usage(end=yesterday)).json()
    assert before["days"] == []
    assert before["start"] == (today - timedelta(days=30)).isoformat()
    only_today = (await usage(start=today.isoformat(), end=today.isoformat())).json()
    assert only_today["totals"]["jobs"] == 1
    backwards = (await usage(start=today.isoformat(), end=yesterday)).json()
    assert backwards["days"] == []
    # The ends of the calendar are ranges like any other.
    assert (await usage(start="0001-01-01", end="0001-01-05")).status_code == 200
    assert (await usage(end=date.max.isoformat())).status_code == 200
    assert (await usage(end="0001-01-02")).json()["start"] == "0001-01-01"
    assert_error(await usage(start="yesterday"), 422, "validation_error")

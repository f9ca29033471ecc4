"""Finding jobs (statuses combined, search by id or URL, the bounded URL scan) and retrying
the failed ones that match, in bulk."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.repositories import job_list
from tests.api.support import assert_error
from tests.api.test_jobs import list_all, submit
from tests.conftest import NewOwner, RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job


async def _failed(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, tag: str
) -> dict[str, Any]:
    spec = {**http_job(target.url(f"/status/404?tag={tag}")), "max_attempts": 1}
    return await submit(client, auth, spec)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def test_statuses_combine_and_search_finds_by_id_or_url(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    tag = uuid.uuid4().hex
    failed = [await _failed(client, auth, target, f"{tag}-{n}") for n in range(2)]
    ok = await submit(client, auth, http_job(target.url(f"/ok?tag={tag.upper()}")))
    async with run_worker():
        for job in [*failed, ok]:
            await wait_for_job(client, auth, job["id"])
    cancelled = await submit(client, auth, http_job(target.url("/ok?other=1")))
    await client.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=auth)

    both = await list_all(client, auth, 50, status=["failed", "cancelled"])  # type: ignore[arg-type]
    assert _ids(both) == [cancelled["id"], failed[1]["id"], failed[0]["id"]]
    assert _ids(await list_all(client, auth, 50, status="failed")) == _ids(failed[::-1])

    # A URL piece, case-insensitive; combined with the other filters.
    found = await list_all(client, auth, 1, q=tag.upper())
    assert _ids(found) == [ok["id"], failed[1]["id"], failed[0]["id"]]
    assert _ids(await list_all(client, auth, 50, q=tag, status="succeeded")) == [ok["id"]]
    assert await list_all(client, auth, 50, q="no-such-url-piece") == []
    # A full id finds that job alone (and never another owner's).
    assert _ids(await list_all(client, auth, 50, q=f" {cancelled['id']} ")) == [cancelled["id"]]
    assert await list_all(client, auth, 50, q=str(uuid.uuid4())) == []
    # The start of an id (the dashboard's short id), upper or lower case.
    short = failed[0]["id"][:8].upper()
    assert failed[0]["id"] in _ids(await list_all(client, auth, 50, q=short))

    bad = await client.get("/v1/jobs", params={"status": ["failed", "bogus"]}, headers=auth)
    assert_error(bad, 422, "validation_error")
    assert_error(await client.get("/v1/jobs?q=", headers=auth), 422, "validation_error")
    # An unknown kind is refused, never answered with an empty list.
    for kind in ("teleport", "HTTP", ""):
        unknown = await client.get("/v1/jobs", params={"kind": kind}, headers=auth)
        assert_error(unknown, 422, "unknown_kind")
        assert "crawl" in unknown.json()["error"]["message"]
    assert _ids(await list_all(client, auth, 50, kind="http", q=tag)) == _ids(found)


async def test_a_url_search_reads_a_bounded_window_per_page(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(job_list, "SEARCH_WINDOW", 3)
    tag = uuid.uuid4().hex
    jobs = []
    for n in range(8):
        url = target.url(f"/ok?n={n}" + (f"&tag={tag}" if n in (0, 1, 6) else ""))
        jobs.append(await submit(client, auth, http_job(url)))
    pages = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"q": tag, "limit": 50}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        pages.append(_ids(response.json()["items"]))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    # 8 jobs read 3 at a time: jobs 7-5, 4-2, 1-0; some pages hold no match but a cursor.
    assert pages == [[jobs[6]["id"]], [], [jobs[1]["id"], jobs[0]["id"]]]


async def test_bulk_retry_requeues_the_matching_failed_jobs_only(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    new_owner: NewOwner,
    target: TargetServer,
    run_worker: RunWorker,
) -> None:
    tag = uuid.uuid4().hex
    other_auth = await new_owner()
    mine = [await _failed(client, auth, target, tag) for _ in range(3)]
    unmatched = await _failed(client, auth, target, "elsewhere")
    theirs = await _failed(client, other_auth, target, tag)
    async with run_worker():
        for job, headers in [*((j, auth) for j in [*mine, unmatched]), (theirs, other_auth)]:
            assert (await wait_for_job(client, headers, job["id"]))["status"] == "failed"
    cancelled = await submit(client, auth, http_job(target.url(f"/ok?tag={tag}")))
    await client.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=auth)

    first = await client.post("/v1/jobs/retry", json={"q": tag, "limit": 2}, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json() == {"retried": 2, "job_ids": _ids(mine[:0:-1]), "more": True}
    second = (await client.post("/v1/jobs/retry", json={"q": tag}, headers=auth)).json()
    assert second == {"retried": 1, "job_ids": [mine[0]["id"]], "more": False}
    for job in mine:
        again = (await client.get(f"/v1/jobs/{job['id']}", headers=auth)).json()
        assert (again["status"], again["attempts"], again["error"]) == ("queued", 0, None)
    for job, headers, status in [
        (unmatched, auth, "failed"),
        (cancelled, auth, "cancelled"),
        (theirs, other_auth, "failed"),
    ]:
        assert (await client.get(f"/v1/jobs/{job['id']}", headers=headers)).json()["status"] == (
            status
        )
    # They run again (and fail again: the target still answers 404).
    async with run_worker():
        for job in mine:
            done = await wait_for_job(client, auth, job["id"])
            assert (done["status"], done["attempts"]) == ("failed", 1)

    nothing = await client.post("/v1/jobs/retry", json={"kind": "fetch"}, headers=auth)
    assert nothing.json() == {"retried": 0, "job_ids": [], "more": False}
    assert_error(
        await client.post("/v1/jobs/retry", json={"kind": "nope"}, headers=auth),
        422,
        "unknown_kind",
    )
    for body in ({"limit": 501}, {"status": "cancelled"}, {"q": ""}):
        assert_error(
            await client.post("/v1/jobs/retry", json=body, headers=auth), 422, "validation_error"
        )

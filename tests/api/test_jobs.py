"""Jobs: submit, idempotency, batches, listing, cancel, retry, and URL checks at submit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared.queue import queue_key
from shared.settings import Settings
from tests.api.support import api_client, assert_error, closed_port_url
from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job

JOB_FIELDS = {
    "id", "kind", "status", "input", "result", "error", "attempts", "max_attempts",
    "agent_id", "created_at", "started_at", "finished_at",
}  # fmt: skip


async def submit(
    client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def list_all(
    client: httpx.AsyncClient, auth: dict[str, str], limit: int, **filters: str
) -> list[dict[str, Any]]:
    """Every job the listing yields, following `next_cursor` to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, str | int] = {"limit": limit, **filters}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not terminate")


async def test_submit_returns_the_documented_fields(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url = closed_port_url("/thing?x=1")
    response = await client.post(
        "/v1/jobs",
        json=http_job(url, method="POST", json={"a": [1, 2]}, headers={"X-Trace": "t1"}),
        headers=auth,
    )
    assert response.status_code == 202, response.text
    assert "idempotent-replayed" not in response.headers
    job = response.json()
    assert set(job) >= JOB_FIELDS, JOB_FIELDS - set(job)
    uuid.UUID(job["id"])
    uuid.UUID(job["agent_id"])
    assert job["kind"] == "http"
    assert job["status"] == "queued"
    assert job["input"]["url"] == url
    assert job["input"]["method"] == "POST"
    assert job["input"]["json"] == {"a": [1, 2]}
    assert job["input"]["headers"] == {"X-Trace": "t1"}
    assert job["result"] is None
    assert job["error"] is None
    assert job["attempts"] == 0
    assert job["max_attempts"] == 3
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
    assert job["started_at"] is None
    assert job["finished_at"] is None
    fetched = await client.get(f"/v1/jobs/{job['id']}", headers=auth)
    assert fetched.status_code == 200
    # The submit's answer may warn (no live worker in this test); a read never does.
    assert fetched.json() == {**job, "warnings": []}
    attempts = await client.get(f"/v1/jobs/{job['id']}/attempts", headers=auth)
    assert attempts.json() == {"items": []}


async def test_concurrent_submissions_share_flushes_and_each_is_durable(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """Concurrent POST /v1/jobs share the group commit's INSERT (api/services/submitter.py):
    each answer is its own job, exactly as written."""
    urls = [closed_port_url(f"/together/{i}") for i in range(40)]
    responses = await asyncio.gather(
        *(client.post("/v1/jobs", json=http_job(url), headers=auth) for url in urls)
    )
    assert [r.status_code for r in responses] == [202] * len(urls), responses[0].text
    jobs = [r.json() for r in responses]
    assert [job["input"]["url"] for job in jobs] == urls
    assert len({job["id"] for job in jobs}) == len(urls)
    for job in jobs:
        fetched = await client.get(f"/v1/jobs/{job['id']}", headers=auth)
        assert fetched.json() == {**job, "warnings": []}


async def test_idempotency_key_replays_and_conflicts(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    spec = http_job(closed_port_url("/once"), headers={"A": "1", "B": "2"})
    first = await client.post("/v1/jobs", json=spec, headers={**auth, **key})
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    # The same body, even with its keys in another order, is a replay.
    reordered = {"input": {"headers": {"B": "2", "A": "1"}, "url": spec["input"]["url"]}}
    second = await client.post(
        "/v1/jobs", json={**reordered, "kind": "http"}, headers={**auth, **key}
    )
    assert second.status_code == 202, second.text
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]

    different = http_job(closed_port_url("/twice"))
    conflict = await client.post("/v1/jobs", json=different, headers={**auth, **key})
    error = assert_error(conflict, 409, "idempotency_conflict")
    assert error["details"] == {"job_id": first.json()["id"]}

    # Only one job exists; a request without the key makes a new one.
    assert [j["id"] for j in await list_all(client, auth, 50)] == [first.json()["id"]]
    fresh = await submit(client, auth, spec)
    assert fresh["id"] != first.json()["id"]


async def test_batch_returns_jobs_in_order(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    urls = [closed_port_url(f"/item/{i}") for i in range(25)]
    response = await client.post(
        "/v1/jobs/batch", json={"jobs": [http_job(url) for url in urls]}, headers=auth
    )
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    assert [job["input"]["url"] for job in jobs] == urls
    assert all(job["status"] == "queued" for job in jobs)
    assert len({job["id"] for job in jobs}) == len(urls)
    for job in jobs:
        fetched = await client.get(f"/v1/jobs/{job['id']}", headers=auth)
        assert fetched.status_code == 200
        assert fetched.json()["input"]["url"] == job["input"]["url"]
    listed = await list_all(client, auth, 500)
    assert {job["id"] for job in listed} == {job["id"] for job in jobs}


async def test_a_batch_whose_insert_fails_is_neither_answered_nor_queued(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    # The answer and the queue's entries are built while the INSERT runs: when the INSERT
    # fails, the client gets a 503 and nothing is queued or listed.
    state = client._transport.app.state.outrider  # type: ignore[attr-defined]
    real = state.store.insert

    async def lost(values: list[dict[str, Any]]) -> list[Any]:
        await asyncio.sleep(0.05)  # long enough for the answer to be built meanwhile
        raise ConnectionError("the database went away")

    redis = Redis.from_url(settings.resolved_redis_url)
    queued = await redis.zcard(queue_key("default"))
    specs = [http_job(closed_port_url(f"/lost/{i}")) for i in range(20)]
    state.store.insert = lost
    try:
        response = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
    finally:
        state.store.insert = real
    try:
        assert_error(response, 503, "service_unavailable")
        assert await redis.zcard(queue_key("default")) == queued
        assert await list_all(client, auth, 500) == []
        # The next batch goes through.
        again = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
        assert again.status_code == 202, again.text
        assert await redis.zcard(queue_key("default")) == queued + len(specs)
    finally:
        await redis.aclose()


async def test_batch_over_the_limit_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    specs = [http_job(closed_port_url())] * 1001
    response = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
    assert_error(response, 422, "validation_error")
    empty = await client.post("/v1/jobs/batch", json={"jobs": []}, headers=auth)
    assert_error(empty, 422, "validation_error")
    assert await list_all(client, auth, 500) == []


async def test_batch_with_one_bad_url_creates_nothing(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    specs = [http_job(closed_port_url(f"/{i}")) for i in range(5)]
    specs[3] = http_job("file:///etc/passwd")
    response = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
    error = assert_error(response, 422, "invalid_url")
    assert error["details"]["index"] == 3
    assert await list_all(client, auth, 500) == []


async def test_list_filters(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    agent = (await client.post("/v1/agents", json={"name": "filtered"}, headers=auth)).json()
    plain = [await submit(client, auth, http_job(closed_port_url(f"/p{i}"))) for i in range(3)]
    with_agent = [
        await submit(client, auth, {**http_job(closed_port_url(f"/a{i}")), "agent_id": agent["id"]})
        for i in range(2)
    ]
    cancelled = await client.post(f"/v1/jobs/{plain[0]['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200
    everything = [*plain, *with_agent]

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {item["id"] for item in items}

    assert ids(await list_all(client, auth, 50)) == ids(everything)
    assert ids(await list_all(client, auth, 50, status="cancelled")) == {plain[0]["id"]}
    assert ids(await list_all(client, auth, 50, status="queued")) == ids(everything[1:])
    assert await list_all(client, auth, 50, status="succeeded") == []
    assert ids(await list_all(client, auth, 50, kind="http")) == ids(everything)
    assert await list_all(client, auth, 50, kind="fetch") == []
    unknown = await client.get("/v1/jobs", params={"kind": "browser"}, headers=auth)
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["code"] == "unknown_kind"
    assert ids(await list_all(client, auth, 50, agent_id=agent["id"])) == ids(with_agent)
    assert await list_all(client, auth, 50, agent_id=str(uuid.uuid4())) == []

    # created_after/created_before are exclusive bounds.
    middle = everything[2]["created_at"]
    after = await list_all(client, auth, 50, created_after=middle)
    before = await list_all(client, auth, 50, created_before=middle)
    assert ids(after) == ids(everything[3:])
    assert ids(before) == ids(everything[:2])
    between = await list_all(
        client,
        auth,
        50,
        created_after=everything[0]["created_at"],
        created_before=everything[4]["created_at"],
    )
    assert ids(between) == ids(everything[1:4])
    both = await list_all(client, auth, 50, status="queued", agent_id=agent["id"])
    assert ids(both) == ids(with_agent)
    assert_error(
        await client.get("/v1/jobs", params={"status": "bogus"}, headers=auth),
        422,
        "validation_error",
    )


async def test_cursor_pagination_walks_every_job_once(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # A batch gives its jobs one created_at, so the order must break ties on the id.
    batch = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [http_job(closed_port_url(f"/{i}")) for i in range(13)]},
        headers=auth,
    )
    singles = [await submit(client, auth, http_job(closed_port_url("/s"))) for _ in range(4)]
    expected = {job["id"] for job in batch.json()["jobs"]} | {job["id"] for job in singles}
    for limit in (1, 4, 5, 17, 500):
        items = await list_all(client, auth, limit)
        got = [item["id"] for item in items]
        assert len(got) == len(set(got)), f"duplicates with limit={limit}"
        assert set(got) == expected, f"missing or extra rows with limit={limit}"
        keys = [(datetime.fromisoformat(i["created_at"]), uuid.UUID(i["id"])) for i in items]
        assert keys == sorted(keys, reverse=True), "not newest first"
        assert got[:4] == [job["id"] for job in reversed(singles)]
    first = (await client.get("/v1/jobs", params={"limit": 17}, headers=auth)).json()
    assert first["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["garbage!!", "e30", "W10", "WzEsMl0", "a" * 400])
async def test_bad_cursor(client: httpx.AsyncClient, auth: dict[str, str], cursor: str) -> None:
    for path in ("/v1/jobs", "/v1/agents"):
        response = await client.get(path, params={"cursor": cursor}, headers=auth)
        assert_error(response, 400, "invalid_cursor")


async def test_cancel_then_retry_runs_the_job(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    job = await submit(client, auth, http_job(target.url("/json")))
    cancelled = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    again = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert_error(again, 409, "invalid_state")
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=auth)).json()["status"] == "cancelled"

    retried = await client.post(f"/v1/jobs/{job['id']}/retry", headers=auth)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued"
    assert retried.json()["finished_at"] is None
    async with run_worker():
        done = await wait_for_job(client, auth, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["status"] == 200
    assert target.hits["/json"] == 1

    again_retry = await client.post(f"/v1/jobs/{job['id']}/retry", headers=auth)
    assert_error(again_retry, 409, "invalid_state")
    cancel_done = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert_error(cancel_done, 409, "invalid_state")
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=auth)).json() == done


async def test_retry_a_queued_job_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job = await submit(client, auth, http_job(closed_port_url()))
    assert_error(
        await client.post(f"/v1/jobs/{job['id']}/retry", headers=auth), 409, "invalid_state"
    )


async def test_loopback_allowed_by_test_settings(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for url in ("http://127.0.0.1/", "http://127.0.0.1:8080/x", "http://[::1]:9/"):
        await submit(client, auth, http_job(url))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "ftp://example.com/file",
        "gopher://example.com/",
        "javascript:alert(1)",
        "http://",
        "http:///path",
        "http://exa mple.com/",
    ],
)
async def test_malformed_or_unsupported_urls_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], url: str
) -> None:
    response = await client.post("/v1/jobs", json=http_job(url), headers=auth)
    assert_error(response, 422, "invalid_url")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://localhost/",
        "http://0.0.0.0/",
    ],
)
async def test_internal_destinations_are_refused_without_allowance(
    settings: Settings, auth: dict[str, str], url: str
) -> None:
    async with api_client(settings, egress_allow_cidrs=[]) as strict:
        response = await strict.post("/v1/jobs", json=http_job(url), headers=auth)
        error = assert_error(response, 422, "invalid_url")
        assert error["details"]["reason"] in ("blocked_destination", "invalid_url")
        listed = await strict.get("/v1/jobs", headers=auth)
        assert listed.json()["items"] == []

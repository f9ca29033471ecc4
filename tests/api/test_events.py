"""Live job events over SSE: every state change in order, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import TargetServer


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse a text/event-stream into events ({"id", "event", "data"}); comments skipped."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


async def collect(
    http: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    until: Any,
    timeout_s: float = 60,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Events of one stream until `until(events)` is true (or the stream ends)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async with http.stream("GET", path, headers=headers, params=params) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in sse_events(response):
                got.append(event)
                if until(got):
                    break
    return got


def by_job(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for event in events:
        seen[event["data"]["job_id"]].append(event["event"])
    return seen


def stream_order(event: dict[str, Any]) -> tuple[int, int]:
    ms, seq = event["id"].split("-")
    return int(ms), int(seq)


async def submit(http: httpx.AsyncClient, auth: dict[str, str], url: str, n: int) -> list[str]:
    jobs = [{"kind": "http", "input": {"url": url}} for _ in range(n)]
    response = await http.post("/v1/jobs/batch", json={"jobs": jobs}, headers=auth)
    assert response.status_code == 202, response.text[:500]
    return [job["id"] for job in response.json()["jobs"]]


async def test_a_client_sees_every_state_change_of_100_jobs_in_order(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with httpx.AsyncClient(base_url=live_api) as http:
        ready = asyncio.Event()

        def done(events: list[dict[str, Any]]) -> bool:
            succeeded: int = sum(e["event"] == "succeeded" for e in events)
            return succeeded >= 100

        async def watch() -> list[dict[str, Any]]:
            async with http.stream("GET", "/v1/events", headers=auth) as response:
                ready.set()
                got: list[dict[str, Any]] = []
                async for event in sse_events(response):
                    got.append(event)
                    if done(got):
                        return got
            return got

        watcher = asyncio.create_task(watch())
        await ready.wait()
        await asyncio.sleep(0.2)  # the stream has taken its starting point
        ids = await submit(http, auth, target.url("/ok"), 100)
        async with run_worker(concurrency=20):
            events = await asyncio.wait_for(watcher, 60)

    seen = by_job(events)
    assert set(seen) == set(ids)
    for job_id in ids:
        assert seen[job_id] == ["queued", "started", "succeeded"], (job_id, seen[job_id])
    assert events == sorted(events, key=stream_order)  # one total order, strictly increasing
    assert len({e["id"] for e in events}) == len(events)
    first = events[0]["data"]
    assert {"id", "type", "job_id", "kind", "queue", "status", "attempt", "at"} <= set(first)
    assert first["id"] == events[0]["id"]
    assert first["type"] == events[0]["event"]


async def test_a_reconnect_with_last_event_id_loses_nothing(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with httpx.AsyncClient(base_url=live_api) as http:
        # Start from an empty stream position: everything after it is this test's.
        async with http.stream("GET", "/v1/events", headers=auth) as response:
            assert response.status_code == 200
        ids = await submit(http, auth, target.url("/ok"), 40)
        async with run_worker(concurrency=10):
            # Read some, drop the connection mid-way, then resume where we stopped.
            replay = {"last_event_id": "0-0"}
            first = await collect(http, "/v1/events", auth, lambda got: len(got) >= 50, 60, replay)
            resume = {**auth, "Last-Event-ID": first[-1]["id"]}
            rest = await collect(
                http,
                "/v1/events",
                resume,
                lambda got: sum(e["event"] == "succeeded" for e in first + got) >= 40,
            )
    events = first + rest
    assert len({e["id"] for e in events}) == len(events), "no event twice"
    seen = by_job(events)
    assert set(seen) == set(ids)
    assert all(seen[job_id] == ["queued", "started", "succeeded"] for job_id in ids)


async def test_a_job_stream_replays_its_events_and_ends_with_the_last(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with httpx.AsyncClient(base_url=live_api) as http:
        (job_id,) = await submit(http, auth, target.url("/ok"), 1)
        async with run_worker():
            # Connected after the job was queued (and perhaps after it ran): replayed anyway.
            events = await collect(http, f"/v1/jobs/{job_id}/events", auth, lambda got: False)
        assert [e["event"] for e in events] == ["queued", "started", "succeeded"]
        assert {e["data"]["job_id"] for e in events} == {job_id}

        # The job has ended and the client has seen it all: 204 tells EventSource to stop.
        again = await http.get(
            f"/v1/jobs/{job_id}/events", headers={**auth, "Last-Event-ID": events[-1]["id"]}
        )
        assert again.status_code == 204

        # An ended job connected to afresh: its events, then the stream closes.
        replayed = await collect(http, f"/v1/jobs/{job_id}/events", auth, lambda got: False)
        assert [e["event"] for e in replayed] == ["queued", "started", "succeeded"]


async def test_retries_are_announced_and_the_failure_carries_its_error(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with httpx.AsyncClient(base_url=live_api) as http:
        spec = {"kind": "http", "input": {"url": target.url("/status/503")}, "max_attempts": 2}
        response = await http.post("/v1/jobs", json=spec, headers=auth)
        job_id = response.json()["id"]
        async with run_worker():
            events = await collect(http, f"/v1/jobs/{job_id}/events", auth, lambda got: False)
    types = [e["event"] for e in events]
    assert types == ["queued", "started", "retrying", "started", "failed"], types
    retrying, failed = events[2]["data"], events[4]["data"]
    assert retrying["status"] == "queued"
    assert retrying["error"]["code"]
    assert "run_after" in retrying
    assert failed["status"] == "failed"
    assert failed["attempt"] == 2
    assert failed["error"]["code"] == retrying["error"]["code"]


async def test_the_owner_stream_filters_by_kind_and_status_and_cancels_show(
    live_api: str, auth: dict[str, str], target: TargetServer
) -> None:
    async with httpx.AsyncClient(base_url=live_api) as http:
        params = {"kind": ["http"], "status": ["cancelled"]}
        ready = asyncio.Event()

        async def watch() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            async with http.stream("GET", "/v1/events", headers=auth, params=params) as response:
                ready.set()
                async for event in sse_events(response):
                    got.append(event)
                    return got
            return got

        watcher = asyncio.create_task(watch())
        await ready.wait()
        await asyncio.sleep(0.2)
        (job_id,) = await submit(http, auth, target.url("/ok"), 1)  # no worker: stays queued
        cancelled = await http.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
        assert cancelled.status_code == 200
        events = await asyncio.wait_for(watcher, 20)
    assert [(e["event"], e["data"]["job_id"]) for e in events] == [("cancelled", job_id)]


async def test_streams_are_private_and_bad_input_is_a_4xx(
    live_api: str, auth: dict[str, str], new_owner: Any, target: TargetServer
) -> None:
    other = await new_owner()
    async with httpx.AsyncClient(base_url=live_api) as http:
        (job_id,) = await submit(http, auth, target.url("/ok"), 1)
        foreign = await http.get(f"/v1/jobs/{job_id}/events", headers=other)
        missing = await http.get(f"/v1/jobs/{uuid.uuid4()}/events", headers=other)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()
        assert (await http.get("/v1/events")).status_code == 401
        bad = await http.get("/v1/events", headers={**auth, "Last-Event-ID": "yesterday"})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_last_event_id"
        kind = await http.get("/v1/events", headers=auth, params={"kind": "ftp"})
        assert_error(kind, 422, "unknown_kind")


@pytest.mark.parametrize("value", ["1764167000000-0", "1764167000000", " 5-1 "])
def test_event_ids_parse(value: str) -> None:
    from shared.events import parse_event_id

    parsed = parse_event_id(value)
    assert parsed is not None
    assert "-" in parsed

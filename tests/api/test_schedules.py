"""The schedule API: create, read, update, delete, run now, history; validation, limits, tenancy."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.settings import Settings
from tests.api.support import api_client, assert_error, closed_port_url
from tests.conftest import NewOwner
from tests.helpers import http_job


def schedule_body(cron: str = "0 * * * *", **fields: Any) -> dict[str, Any]:
    return {"cron": cron, "timezone": "UTC", "job": http_job(closed_port_url("/s")), **fields}


async def create(
    client: httpx.AsyncClient, auth: dict[str, str], cron: str = "0 * * * *", **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/schedules", json=schedule_body(cron, **fields), headers=auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def utc(value: str) -> datetime:
    assert value.endswith(("Z", "+00:00")), value
    return datetime.fromisoformat(value)


async def test_create_shows_the_next_five_fire_times(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    schedule = await create(client, auth, "0 * * * *", timezone="Europe/Berlin")
    assert schedule["cron"] == "0 * * * *"
    assert schedule["timezone"] == "Europe/Berlin"
    assert schedule["enabled"] is True
    assert (schedule["overlap"], schedule["misfire"]) == ("allow", "skip")
    assert schedule["missed_count"] == 0
    assert schedule["job"]["kind"] == "http"
    times = [utc(t) for t in schedule["next_fire_times"]]
    assert len(times) == 5
    assert before < times[0] <= before + timedelta(hours=1)
    assert all(t.minute == 0 and t.second == 0 for t in times)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(times))
    fetched = await client.get(f"/v1/schedules/{schedule['id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json()["next_fire_times"][0] == schedule["next_fire_times"][0]


async def test_aliases_and_default_timezone(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"cron": "@daily", "job": http_job(closed_port_url())}
    response = await client.post("/v1/schedules", json=body, headers=auth)
    assert response.status_code == 201, response.text
    schedule = response.json()
    assert schedule["timezone"] == "UTC"
    assert all(utc(t).hour == 0 for t in schedule["next_fire_times"])


async def test_invalid_cron_and_timezone_are_422_with_a_clear_message(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for cron, fragment in [
        ("61 * * * *", "out of range"),
        ("* * * *", "5 fields"),
        ("0 0 30 2 *", "never fires"),
        ("@sometimes", "alias"),
    ]:
        response = await client.post("/v1/schedules", json=schedule_body(cron), headers=auth)
        error = assert_error(response, 422, "invalid_cron")
        assert fragment in error["message"], error
    response = await client.post(
        "/v1/schedules", json=schedule_body(timezone="Europe/Atlantis"), headers=auth
    )
    error = assert_error(response, 422, "invalid_timezone")
    assert "Europe/Atlantis" in error["message"]
    listed = await client.get("/v1/schedules", headers=auth)
    assert listed.json()["items"] == []


async def test_the_job_template_is_checked_like_a_job(
    client: httpx.AsyncClient, auth: dict[str, str], new_owner: NewOwner
) -> None:
    bad_url = schedule_body(job=http_job("http://169.254.169.254/latest/meta-data"))
    assert_error(await client.post("/v1/schedules", json=bad_url, headers=auth), 422, "invalid_url")
    unknown_kind = schedule_body(job={"kind": "teleport", "input": {}})
    response = await client.post("/v1/schedules", json=unknown_kind, headers=auth)
    assert_error(response, 422, "unknown_kind")
    other = await new_owner()
    their_agent = (await client.post("/v1/agents", json={"name": "theirs"}, headers=other)).json()
    foreign = schedule_body(job={**http_job(closed_port_url()), "agent_id": their_agent["id"]})
    response = await client.post("/v1/schedules", json=foreign, headers=auth)
    assert_error(response, 404, "agent_not_found")


async def test_shortest_interval_limit(settings: Settings, auth: dict[str, str]) -> None:
    async with api_client(settings, schedule_min_interval_s=300) as client:
        for cron in ("* * * * *", "*/2 * * * *", "0,1 3 * * *"):
            response = await client.post("/v1/schedules", json=schedule_body(cron), headers=auth)
            error = assert_error(response, 422, "schedule_interval_too_short")
            assert error["details"]["min_interval_s"] == 300
        await create(client, auth, "*/5 * * * *")
        schedule = await create(client, auth, "@hourly")
        response = await client.patch(
            f"/v1/schedules/{schedule['id']}", json={"cron": "*/1 * * * *"}, headers=auth
        )
        assert_error(response, 422, "schedule_interval_too_short")


async def test_schedules_per_owner_limit(
    settings: Settings, auth: dict[str, str], new_owner: NewOwner
) -> None:
    async with api_client(settings, schedule_max_per_owner=2) as client:
        first = await create(client, auth)
        await create(client, auth)
        response = await client.post("/v1/schedules", json=schedule_body(), headers=auth)
        error = assert_error(response, 422, "schedule_limit_reached")
        assert error["details"] == {"limit": 2}
        await create(client, await new_owner())  # the limit is per owner
        deleted = await client.delete(f"/v1/schedules/{first['id']}", headers=auth)
        assert deleted.status_code == 204
        await create(client, auth)


async def test_update_pause_resume_and_null_keeps(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    schedule = await create(client, auth, "0 * * * *")
    url = f"/v1/schedules/{schedule['id']}"
    response = await client.patch(
        url, json={"cron": "30 6 * * *", "timezone": "Asia/Tokyo"}, headers=auth
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["cron"], changed["timezone"]) == ("30 6 * * *", "Asia/Tokyo")
    assert all(utc(t).strftime("%H:%M") == "21:30" for t in changed["next_fire_times"])
    paused = (await client.patch(url, json={"enabled": False}, headers=auth)).json()
    assert paused["enabled"] is False
    assert paused["next_fire_times"] == []
    kept = (await client.patch(url, json={"cron": None, "overlap": "skip"}, headers=auth)).json()
    assert (kept["cron"], kept["overlap"], kept["enabled"]) == ("30 6 * * *", "skip", False)
    resumed = (
        await client.patch(url, json={"enabled": True, "misfire": "run_once"}, headers=auth)
    ).json()
    assert resumed["enabled"] is True
    assert resumed["misfire"] == "run_once"
    assert len(resumed["next_fire_times"]) == 5
    new_job = http_job(closed_port_url("/other"), method="POST")
    updated = (await client.patch(url, json={"job": new_job}, headers=auth)).json()
    assert updated["job"]["input"]["url"].endswith("/other")
    assert_error(await client.patch(url, json={"cron": "nope"}, headers=auth), 422, "invalid_cron")
    assert (await client.get(url, headers=auth)).json()["cron"] == "30 6 * * *"


async def test_run_now_creates_a_job_that_links_back(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    schedule = await create(client, auth, "0 0 1 1 *", enabled=False)
    response = await client.post(f"/v1/schedules/{schedule['id']}/run", headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["schedule_id"] == schedule["id"]
    assert job["status"] == "queued"
    instant = utc(job["schedule_instant"])
    assert abs((instant - datetime.now(UTC)).total_seconds()) < 60
    fetched = (await client.get(f"/v1/jobs/{job['id']}", headers=auth)).json()
    assert (fetched["schedule_id"], fetched["schedule_instant"]) == (
        schedule["id"],
        job["schedule_instant"],
    )
    runs = (await client.get(f"/v1/schedules/{schedule['id']}/runs", headers=auth)).json()
    assert len(runs["items"]) == 1
    run = runs["items"][0]
    assert (run["job_id"], run["status"], run["skipped_because"]) == (job["id"], "fired", None)
    assert (run["trigger"], run["job_status"]) == ("manual", "queued")
    assert utc(run["instant"]) == instant
    plain = (await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=auth)).json()
    assert (plain["schedule_id"], plain["schedule_instant"]) == (None, None)


async def test_run_history_is_newest_first_and_paginates(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    schedule = await create(client, auth)
    jobs = []
    for _ in range(3):
        response = await client.post(f"/v1/schedules/{schedule['id']}/run", headers=auth)
        jobs.append(response.json()["id"])
    url = f"/v1/schedules/{schedule['id']}/runs"
    page = (await client.get(url, params={"limit": 2}, headers=auth)).json()
    assert [r["job_id"] for r in page["items"]] == jobs[::-1][:2]
    rest = (await client.get(url, params={"cursor": page["next_cursor"]}, headers=auth)).json()
    assert [r["job_id"] for r in rest["items"]] == jobs[:1]
    assert rest["next_cursor"] is None
    assert_error(await client.get(url, params={"cursor": "x"}, headers=auth), 400, "invalid_cursor")


async def test_delete_hides_the_schedule_and_keeps_its_jobs(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    schedule = await create(client, auth)
    job = (await client.post(f"/v1/schedules/{schedule['id']}/run", headers=auth)).json()
    url = f"/v1/schedules/{schedule['id']}"
    assert (await client.delete(url, headers=auth)).status_code == 204
    assert_error(await client.get(url, headers=auth), 404, "not_found")
    assert_error(await client.delete(url, headers=auth), 404, "not_found")
    assert (await client.get("/v1/schedules", headers=auth)).json()["items"] == []
    kept = (await client.get(f"/v1/jobs/{job['id']}", headers=auth)).json()
    assert kept["schedule_id"] == schedule["id"]


async def test_another_owners_schedule_is_a_missing_one(
    client: httpx.AsyncClient, auth: dict[str, str], new_owner: NewOwner
) -> None:
    mine = await create(client, auth)
    theirs = await new_owner()
    listed = await client.get("/v1/schedules", headers=theirs)
    assert listed.json()["items"] == []
    missing = str(uuid.uuid4())
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"enabled": False}),
        ("DELETE", "", None),
        ("POST", "/run", None),
        ("GET", "/runs", None),
    ]:
        foreign = await client.request(
            method, f"/v1/schedules/{mine['id']}{suffix}", json=body, headers=theirs
        )
        absent = await client.request(
            method, f"/v1/schedules/{missing}{suffix}", json=body, headers=theirs
        )
        assert foreign.status_code == absent.status_code == 404, (method, suffix)
        assert foreign.json() == absent.json()
    still = (await client.get(f"/v1/schedules/{mine['id']}", headers=auth)).json()
    assert still["enabled"] is True
    runs = (await client.get(f"/v1/schedules/{mine['id']}/runs", headers=auth)).json()
    assert runs["items"] == []
    listed = (await client.get("/v1/schedules", headers=auth)).json()["items"]
    assert [s["id"] for s in listed] == [mine["id"]]

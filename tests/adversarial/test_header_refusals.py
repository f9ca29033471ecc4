"""Headers are refused at submit wherever they come in, with `forbidden_header` (framing is
Outrider's) or `invalid_header` (control characters, bad names), naming the header."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.adversarial.variants import FORBIDDEN, INVALID, SMUGGLING, USER_AGENTS
from tests.api.support import assert_error, closed_port_url
from tests.conftest import RunWorker
from tests.helpers import TargetServer, wait_for_job

URL = closed_port_url()
JSON = {"Content-Type": "application/json"}
BODY_ROUTES = [
    ("post", "/v1/jobs"),
    ("post", "/v1/jobs/batch"),
    ("post", "/v1/agents"),
    ("patch", "/v1/agents/{agent_id}"),
    ("post", "/v1/schedules"),
    ("patch", "/v1/schedules/{schedule_id}"),
]


def spec(kind: str, headers: dict[str, str]) -> dict[str, Any]:
    return {"kind": kind, "input": {"url": URL, "headers": headers}}


def assert_refused(response: httpx.Response, code: str, header: str) -> None:
    """The stable code, and a detail about that header (its name or its value)."""
    error = assert_error(response, 422, code)
    about = [d for d in error["details"] if d["type"] == code]
    assert about, error
    locs = [d["loc"] for d in about]
    assert any(loc[-2:] == [header, "[key]"] or loc[-1] == header for loc in locs), locs
    if code == FORBIDDEN:
        assert repr(header) in error["message"], error["message"]


async def nothing_created(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert (await client.get("/v1/jobs", headers=auth)).json()["items"] == []
    assert (await client.get("/v1/schedules", headers=auth)).json()["items"] == []


@pytest.mark.parametrize("kind", ["http", "fetch", "render", "scrape"])
async def test_job_inputs(client: httpx.AsyncClient, auth: dict[str, str], kind: str) -> None:
    for headers, code, header in SMUGGLING:
        response = await client.post("/v1/jobs", json=spec(kind, headers), headers=auth)
        assert_refused(response, code, header)
    await nothing_created(client, auth)
    fine = {"X-Ok": "a b; c=d", "X-Tab": "a\tb \t c"}  # SP and HTAB are field-value characters
    ok = await client.post("/v1/jobs", json=spec(kind, fine), headers=auth)
    assert ok.status_code == 202, ok.text
    assert ok.json()["input"]["headers"] == fine


async def test_tabs_and_spaces_in_a_value_are_sent_as_given(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, target: TargetServer
) -> None:
    agent = {"name": "tabs", "user_agent": "bot/2\t(+https://x.test/bot)"}
    made = await client.post("/v1/agents", json=agent, headers=auth)
    assert made.status_code == 201, made.text
    headers = {"X-Tab": "a\tb \t c", "X-Space": "a  b"}
    body = {
        "kind": "http",
        "agent_id": made.json()["id"],
        "input": {"url": target.url("/json"), "headers": headers},
    }
    async with run_worker():
        response = await client.post("/v1/jobs", json=body, headers=auth)
        assert response.status_code == 202, response.text
        job = await wait_for_job(client, auth, response.json()["id"])
    assert job["status"] == "succeeded", job
    seen = job["result"]["body"]["headers"]
    assert (seen["X-Tab"], seen["X-Space"]) == ("a\tb \t c", "a  b")
    assert seen["User-Agent"] == "bot/2\t(+https://x.test/bot)"


async def test_the_header_an_http_auth_names(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for name, code in [
        ("Transfer-Encoding", FORBIDDEN),
        ("content-length", FORBIDDEN),
        ("Host", FORBIDDEN),
        ("Proxy-Authorization", FORBIDDEN),
        ("X-Key\r\nTransfer-Encoding", INVALID),
        ("X Key", INVALID),
    ]:
        named = {"secret": "s", "scheme": "header", "header": name}
        body = {"kind": "http", "input": {"url": URL, "auth": named}}
        response = await client.post("/v1/jobs", json=body, headers=auth)
        error = assert_error(response, 422, code)
        assert [d["loc"] for d in error["details"]] == [["body", "http", "input", "auth", "header"]]
    await nothing_created(client, auth)


async def test_a_duplicated_json_key(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    # JSON with the same key twice: whichever the parser keeps, it is refused.
    duplicated = '{"Transfer-Encoding": "identity", "Transfer-Encoding": "chunked"}'
    body = f'{{"kind": "http", "input": {{"url": "{URL}", "headers": {duplicated}}}}}'
    response = await client.post("/v1/jobs", content=body.encode(), headers={**auth, **JSON})
    assert_refused(response, FORBIDDEN, "Transfer-Encoding")
    await nothing_created(client, auth)


async def test_a_batch_is_refused_whole(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for headers, code, header in SMUGGLING:
        jobs = [spec("http", {"X-Ok": "1"}), spec("fetch", headers)]
        response = await client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=auth)
        assert_refused(response, code, header)
        locs = [d["loc"][:3] for d in response.json()["error"]["details"]]
        assert ["body", "jobs", "1"] in locs, locs
    await nothing_created(client, auth)


async def test_a_schedules_job_spec(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    good = {"cron": "0 * * * *", "job": spec("http", {"X-Ok": "1"}), "enabled": False}
    created = await client.post("/v1/schedules", json=good, headers=auth)
    assert created.status_code == 201, created.text
    path = f"/v1/schedules/{created.json()['id']}"
    for headers, code, header in SMUGGLING:
        body = {**good, "job": spec("fetch", headers)}
        assert_refused(await client.post("/v1/schedules", json=body, headers=auth), code, header)
        patch = {"job": spec("http", headers)}
        assert_refused(await client.patch(path, json=patch, headers=auth), code, header)
    schedules = (await client.get("/v1/schedules", headers=auth)).json()["items"]
    assert [s["job"]["input"]["headers"] for s in schedules] == [{"X-Ok": "1"}]


async def test_agent_headers_on_create_and_patch(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    created = await client.post(
        "/v1/agents", json={"name": "ok", "headers": {"X-Team": "a"}}, headers=auth
    )
    assert created.status_code == 201, created.text
    path = f"/v1/agents/{created.json()['id']}"
    for number, (headers, code, header) in enumerate(SMUGGLING):
        body = {"name": f"bad-{number}", "headers": headers}
        assert_refused(await client.post("/v1/agents", json=body, headers=auth), code, header)
        patch = {"headers": headers}
        assert_refused(await client.patch(path, json=patch, headers=auth), code, header)
    agents = (await client.get("/v1/agents", headers=auth)).json()["items"]
    assert sorted(a["name"] for a in agents) == ["default", "ok"]
    assert (await client.get(path, headers=auth)).json()["headers"] == {"X-Team": "a"}


async def test_agent_user_agent_on_create_and_patch(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    created = await client.post("/v1/agents", json={"name": "ok"}, headers=auth)
    path = f"/v1/agents/{created.json()['id']}"
    for user_agent, code in USER_AGENTS:
        body = {"name": "bad", "user_agent": user_agent}
        error = assert_error(await client.post("/v1/agents", json=body, headers=auth), 422, code)
        assert [d["loc"] for d in error["details"]] == [["body", "user_agent"]]
        patch = {"user_agent": user_agent}
        error = assert_error(await client.patch(path, json=patch, headers=auth), 422, code)
        assert [d["loc"] for d in error["details"]] == [["body", "user_agent"]]
    fine = await client.patch(
        path, json={"user_agent": "bot/2 (+https://x.test/bot)"}, headers=auth
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["user_agent"] == "bot/2 (+https://x.test/bot)"


async def test_other_errors_keep_their_code(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # A header problem names its code even beside another problem; without one, nothing
    # changes: an unknown field is still a `validation_error`.
    body = spec("http", {"Connection": "close"})
    body["max_attempts"] = 0
    error = assert_error(await client.post("/v1/jobs", json=body, headers=auth), 422, FORBIDDEN)
    assert {d["type"] for d in error["details"]} == {FORBIDDEN, "greater_than_equal"}
    body = {**spec("http", {"X-Ok": "1"}), "urgency": 1}
    assert_error(await client.post("/v1/jobs", json=body, headers=auth), 422, "validation_error")
    # A NUL elsewhere than a header is still refused as before.
    text = json.dumps({"kind": "http", "input": {"url": URL, "text": "a\u0000"}})
    response = await client.post("/v1/jobs", content=text.encode(), headers={**auth, **JSON})
    assert_error(response, 422, "validation_error")


async def test_openapi_declares_the_codes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for method, path in BODY_ROUTES:
        description = paths[path][method]["responses"]["422"]["description"]
        assert "`forbidden_header`" in description, (method, path)
        assert "`invalid_header`" in description, (method, path)
    listing = paths["/v1/jobs"]["get"]["responses"]["422"]["description"]
    assert "forbidden_header" not in listing

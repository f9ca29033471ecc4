"""Bad input: every malformed request is a 4xx with the one error shape, never a 500."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.api.support import api_client, assert_error, closed_port_url
from tests.helpers import http_job

JSON = {"Content-Type": "application/json"}
URL = closed_port_url()


def raw(text: str) -> bytes:
    """A JSON document given as text, sent byte for byte (escapes stay escapes)."""
    return text.encode()


async def post_raw(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, body: bytes
) -> httpx.Response:
    return await client.post(path, content=body, headers={**auth, **JSON})


async def assert_nothing_created(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert (await client.get("/v1/jobs", headers=auth)).json()["items"] == []
    agents = (await client.get("/v1/agents", headers=auth)).json()["items"]
    assert [a["name"] for a in agents] == ["default"]


@pytest.mark.parametrize(
    "body", [b'{"kind": "http", "input": {', b"{'kind': 'http'}", b"nope", b'{"a":1}}', b"\xff\xfe"]
)
async def test_malformed_json(client: httpx.AsyncClient, auth: dict[str, str], body: bytes) -> None:
    for path in ("/v1/jobs", "/v1/jobs/batch", "/v1/agents"):
        assert_error(await post_raw(client, auth, path, body), 400, "invalid_json")
    await assert_nothing_created(client, auth)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/jobs", {**http_job(URL), "urgency": 5}),
        ("/v1/jobs", http_job(URL, proxy="http://evil")),
        ("/v1/jobs", http_job(URL, auth={"secret": "s", "password": "x"})),
        ("/v1/jobs/batch", {"jobs": [http_job(URL)], "atomic": False}),
        ("/v1/jobs/batch", {"jobs": [{**http_job(URL), "extra": 1}]}),
        ("/v1/agents", {"name": "a", "colour": "red"}),
    ],
)
async def test_unknown_fields_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    assert_error(await client.post(path, json=body, headers=auth), 422, "validation_error")
    await assert_nothing_created(client, auth)


@pytest.mark.parametrize(
    "body",
    [
        {**http_job(URL), "max_attempts": "three"},
        {**http_job(URL), "max_attempts": 1.5},
        {**http_job(URL), "max_attempts": 0},
        {**http_job(URL), "timeout_s": -1},
        {**http_job(URL), "agent_id": "not-a-uuid"},
        {"kind": "http", "input": [URL]},
        {"kind": "http", "input": {"url": 123}},
        {"kind": "http", "input": {"url": ""}},
        {"kind": "http"},
        {"input": {"url": URL}},
        http_job(URL, method="TRACE"),
        http_job(URL, json={"a": 1}, text="both"),
        http_job(URL, expected_status=[99]),
        [http_job(URL)],
        "a string",
        None,
    ],
)
async def test_wrong_types_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], body: Any
) -> None:
    response = await client.post("/v1/jobs", json=body, headers=auth)
    assert_error(response, 422, "validation_error")
    details = response.json()["error"]["details"]
    assert isinstance(details, list), details
    assert details
    assert all(set(d) == {"loc", "msg", "type"} for d in details), details


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Bad Header": "x"}, "invalid_header"),
        ({"X": "a\r\nInjected: yes"}, "invalid_header"),
        ({"Transfer-Encoding": "chunked"}, "forbidden_header"),
    ],
)
async def test_bad_headers_have_their_own_codes(
    client: httpx.AsyncClient, auth: dict[str, str], headers: dict[str, str], code: str
) -> None:
    """More in tests/adversarial/test_header_refusals.py."""
    response = await client.post("/v1/jobs", json=http_job(URL, headers=headers), headers=auth)
    error = assert_error(response, 422, code)
    assert [d["type"] for d in error["details"]] == [code]
    await assert_nothing_created(client, auth)


@pytest.mark.parametrize("kind", ["teleport", "", "HTTP", 7])
async def test_unknown_kind(client: httpx.AsyncClient, auth: dict[str, str], kind: Any) -> None:
    response = await client.post(
        "/v1/jobs", json={"kind": kind, "input": {"url": URL}}, headers=auth
    )
    if isinstance(kind, str):
        assert_error(response, 422, "unknown_kind")
    else:
        assert response.status_code == 422, response.text
    batch = await client.post(
        "/v1/jobs/batch", json={"jobs": [{"kind": kind, "input": {"url": URL}}]}, headers=auth
    )
    assert batch.status_code == 422, batch.text


@pytest.fixture
async def small_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, max_request_bytes=1024) as client:
        yield client


def padded_job(size: int) -> bytes:
    body = json.dumps(http_job(URL, text="x" * size)).encode()
    assert len(body) > size
    return body


async def test_body_over_limit_with_content_length(
    small_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ok = await post_raw(small_client, auth, "/v1/jobs", padded_job(500))
    assert ok.status_code == 202, ok.text
    for path in ("/v1/jobs", "/v1/jobs/batch", "/v1/agents"):
        response = await post_raw(small_client, auth, path, padded_job(2000))
        assert_error(response, 413, "payload_too_large")
    # A Content-Length that lies low does not get a big body through either.
    request = small_client.build_request(
        "POST", "/v1/jobs", content=padded_job(2000), headers={**auth, **JSON}
    )
    request.headers["Content-Length"] = "100"
    assert_error(await small_client.send(request), 413, "payload_too_large")
    items = (await small_client.get("/v1/jobs", headers=auth)).json()["items"]
    assert [job["id"] for job in items] == [ok.json()["id"]]


async def test_every_answer_carries_its_own_request_id(
    small_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """X-Request-ID (api/middleware.py) on answers of every kind: accepted, refused before
    parsing (413), invalid, unknown route, unauthenticated."""
    responses = [
        await post_raw(small_client, auth, "/v1/jobs", padded_job(10)),
        await post_raw(small_client, auth, "/v1/jobs", padded_job(2000)),
        await post_raw(small_client, auth, "/v1/jobs", b"nope"),
        await small_client.get("/v1/nothing", headers=auth),
        await small_client.get("/v1/jobs"),
        await small_client.get("/healthz"),
    ]
    assert [r.status_code for r in responses] == [202, 413, 400, 404, 401, 200]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_body_over_limit_when_chunked(
    small_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = padded_job(4000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    request = small_client.build_request(
        "POST", "/v1/jobs", content=chunks(), headers={**auth, **JSON}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await small_client.send(request)
    assert_error(response, 413, "payload_too_large")

    small = padded_job(300)

    async def small_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(small), 100):
            yield small[start : start + 100]

    request = small_client.build_request(
        "POST", "/v1/jobs", content=small_chunks(), headers={**auth, **JSON}
    )
    accepted = await small_client.send(request)
    assert accepted.status_code == 202, accepted.text


async def test_body_over_default_limit(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await post_raw(client, auth, "/v1/jobs", padded_job(3 * 1024 * 1024))
    assert_error(response, 413, "payload_too_large")


def job_text(
    input_extra: str = "", top_extra: str = "", url_suffix: str = "", kind: str = '"http"'
) -> bytes:
    """A job as raw JSON text; the extras are raw JSON members added to `input` / the top."""
    members = f'"url": "{URL}{url_suffix}"' + (f", {input_extra}" if input_extra else "")
    top = f'"kind": {kind}, "input": {{{members}}}' + (f", {top_extra}" if top_extra else "")
    return raw(f"{{{top}}}")


def job_with(fragment: str) -> bytes:
    """A job whose input holds `fragment` (raw JSON text) as its `json` body."""
    return job_text(input_extra=f'"json": {fragment}')


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (job_text(top_extra=f'"max_attempts": {10**30}'), 422, "validation_error"),
        (job_text(top_extra=f'"max_attempts": -{10**30}'), 422, "validation_error"),
        (job_text(top_extra='"timeout_s": 1e999'), 422, "validation_error"),
        (job_text(input_extra='"params": {"n": 1e400}'), 422, "validation_error"),
        (job_with(str(10**30)), 422, "validation_error"),
        (job_with(str(2**63)), 422, "validation_error"),
        (job_with('{"n": %s}' % ("9" * 4000)), 422, "validation_error"),
        (job_with("[%s]" % ("1" * 4300)), 422, "validation_error"),
        (job_with("NaN"), 422, "validation_error"),
        (job_with("-Infinity"), 422, "validation_error"),
        (job_with(nested(150)), 422, "validation_error"),
        (job_with(nested(300)), 422, "validation_error"),
        (job_with(nested(800)), 422, "validation_error"),
        # Python's JSON parser itself refuses these (int digit limit, recursion): a plain 400.
        (job_with('{"n": %s}' % ("9" * 5000)), 400, "bad_request"),
        (job_with(nested(5000)), 400, "bad_request"),
    ],
)
async def test_huge_numbers_and_deep_nesting_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, status: int, code: str
) -> None:
    assert_error(await post_raw(client, auth, "/v1/jobs", body), status, code)
    batch = b'{"jobs": [' + body + b"]}"
    assert_error(await post_raw(client, auth, "/v1/jobs/batch", batch), status, code)
    await assert_nothing_created(client, auth)


async def test_reasonable_nesting_and_big_numbers_are_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for fragment in (nested(50), str(2**63 - 1), str(-(2**63) + 1), "1.5e300"):
        response = await post_raw(client, auth, "/v1/jobs", job_with(fragment))
        assert response.status_code == 202, response.text
        assert response.json()["input"]["json"] == json.loads(fragment)


@pytest.mark.parametrize(
    "body",
    [
        job_with(r'"a\u0000b"'),
        job_with(r'"\ud800"'),
        job_with(r'{"\ud800": 1}'),
        job_with(r'{"k\u0000": 1}'),
        job_text(input_extra=r'"headers": {"X": "\u0000"}'),
        job_text(input_extra=r'"text": "\udfff"'),
        job_text(url_suffix=r"\u0000"),
        job_text(url_suffix=r"\ud800"),
        job_text(kind=r'"\ud800"'),
        job_text(kind=r'"\u0000"'),
        job_text(top_extra=r'"\ud800": 1'),
        b'{"jobs": [' + job_text(kind=r'"\ud800"') + b"]}",
    ],
)
async def test_nul_and_lone_surrogates_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes
) -> None:
    path = "/v1/jobs/batch" if body.startswith(b'{"jobs"') else "/v1/jobs"
    response = await post_raw(client, auth, path, body)
    assert response.status_code == 422, response.text
    assert_error(response, 422, response.json()["error"]["code"])
    await assert_nothing_created(client, auth)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (raw('{"name": "a\\u0000"}'), "validation_error"),
        (raw('{"name": "\\ud800"}'), "validation_error"),
        (raw('{"name": "ok", "secrets": {"K": "\\ud800"}}'), "validation_error"),
        (raw('{"name": "ok", "headers": {"X": "\\u0000"}}'), "invalid_header"),
        (raw('{"name": "ok", "user_agent": "a\\u0000"}'), "invalid_header"),
    ],
)
async def test_agents_refuse_nul_and_lone_surrogates(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, code: str
) -> None:
    assert_error(await post_raw(client, auth, "/v1/agents", body), 422, code)
    await assert_nothing_created(client, auth)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_wrong_content_type(
    client: httpx.AsyncClient, auth: dict[str, str], content_type: str
) -> None:
    body = json.dumps(http_job(URL)).encode()
    for path in ("/v1/jobs", "/v1/agents"):
        response = await client.post(
            path, content=body, headers={**auth, "Content-Type": content_type}
        )
        assert 400 <= response.status_code < 500, response.text
        assert_error(response, response.status_code, response.json()["error"]["code"])
    await assert_nothing_created(client, auth)


@pytest.mark.parametrize("bad_id", ["abc", "123", "00000000-0000-0000-0000-00000000000g", "%00"])
async def test_path_ids_must_be_uuids(
    client: httpx.AsyncClient, auth: dict[str, str], bad_id: str
) -> None:
    for method, path in [
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/attempts"),
        ("POST", "/v1/jobs/{id}/cancel"),
        ("POST", "/v1/jobs/{id}/retry"),
        ("GET", "/v1/agents/{id}"),
        ("PATCH", "/v1/agents/{id}"),
        ("DELETE", "/v1/agents/{id}"),
    ]:
        body = {"name": "x"} if method == "PATCH" else None
        response = await client.request(method, path.format(id=bad_id), headers=auth, json=body)
        assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": -1},
        {"limit": 100000},
        {"limit": "ten"},
        {"limit": 10**30},
        {"agent_id": "nope"},
        {"created_after": "yesterday"},
        {"created_before": "2024-13-01T00:00:00Z"},
        {"cursor": "c" * 501},
    ],
)
async def test_bad_query_parameters(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get("/v1/jobs", params=params, headers=auth)
    assert_error(response, 422, "validation_error")
    if set(params) <= {"limit", "cursor"}:
        response = await client.get("/v1/agents", params=params, headers=auth)
        assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("when", "status"),
    [
        ("0001-01-01T00:00:00+01:00", 422),  # before year 1 once in UTC
        ("9999-12-31T23:59:59-01:00", 422),  # after year 9999 once in UTC
        ("0001-01-01T00:00:00", 200),
        ("9999-12-31T23:59:59.999999+00:00", 200),
        ("1970-01-01T00:00:00Z", 200),
    ],
)
async def test_extreme_dates_in_filters(
    client: httpx.AsyncClient, auth: dict[str, str], when: str, status: int
) -> None:
    for name in ("created_after", "created_before"):
        response = await client.get("/v1/jobs", params={name: when}, headers=auth)
        if status == 200:
            assert response.status_code == 200, response.text
            assert response.json() == {"items": [], "next_cursor": None}
        else:
            error = assert_error(response, 422, "validation_error")
            assert error["details"][0]["loc"] == ["query", name]


def make_cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "position",
    [
        ["0001-01-01T00:00:00+01:00", str(uuid.uuid4())],
        ["9999-12-31T23:59:59-01:00", str(uuid.uuid4())],
        ["2024-01-01T00:00:00+00:00", "not-a-uuid"],
        ["2024-01-01T00:00:00", str(uuid.uuid4())],
        ["2024-01-01T00:00:00+00:00"],
        [None, None],
        [1, 2],
        {"a": 1},
        "x",
        [1, 2, 3],
    ],
)
async def test_crafted_cursors_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], position: Any
) -> None:
    for path in ("/v1/jobs", "/v1/agents"):
        response = await client.get(path, params={"cursor": make_cursor(position)}, headers=auth)
        assert_error(response, 400, "invalid_cursor")


async def test_well_formed_cursor_from_elsewhere_is_a_position(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job = (await client.post("/v1/jobs", json=http_job(URL), headers=auth)).json()
    later = make_cursor(["9999-01-01T00:00:00+00:00", str(uuid.uuid4())])
    earlier = make_cursor(["2000-01-01T00:00:00+00:00", str(uuid.uuid4())])
    page = (await client.get("/v1/jobs", params={"cursor": later}, headers=auth)).json()
    assert [item["id"] for item in page["items"]] == [job["id"]]
    page = (await client.get("/v1/jobs", params={"cursor": earlier}, headers=auth)).json()
    assert page["items"] == []


@pytest.mark.parametrize("key", [b"has space", "\u00fcn\u00efcode".encode(), b"x" * 201, b""])
async def test_bad_idempotency_keys(
    client: httpx.AsyncClient, auth: dict[str, str], key: bytes
) -> None:
    headers = [(name.encode(), value.encode()) for name, value in auth.items()]
    headers.append((b"Idempotency-Key", key))
    response = await client.post("/v1/jobs", json=http_job(URL), headers=headers)
    error = assert_error(response, 422, "validation_error")
    assert [d["loc"] for d in error["details"]] == [["header", "Idempotency-Key"]]
    await assert_nothing_created(client, auth)


async def test_unknown_route_and_method(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert_error(await client.get("/v1/nothing", headers=auth), 404, "not_found")
    assert_error(await client.put("/v1/jobs", headers=auth), 405, "method_not_allowed")
    assert_error(
        await client.delete(f"/v1/jobs/{uuid.uuid4()}", headers=auth), 405, "method_not_allowed"
    )


@pytest.mark.parametrize(
    "cursor",
    ["-999999999999999999." + "0" * 32, "999999999999999999." + "f" * 32, "0." + "a" * 32],
)
async def test_any_cursor_of_the_stated_shape_is_a_position(
    client: httpx.AsyncClient, auth: dict[str, str], cursor: str
) -> None:
    """The schema states the cursor's shape: every string of it is accepted (at worst a
    position before the first row or after the last)."""
    for path in ("/v1/jobs", "/v1/agents", "/v1/schedules"):
        response = await client.get(path, params={"cursor": cursor}, headers=auth)
        assert response.status_code == 200, (path, response.text)

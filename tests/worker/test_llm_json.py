"""The `json` format against a local server that speaks the chat-completions protocol: a
schema-valid object, one repair round, `extraction_invalid`, the key nowhere but the call."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from shared.settings import Settings
from tests.api.support import api_client
from tests.conftest import RunWorker
from tests.helpers import serve_aiohttp, wait_for_job
from tests.worker.file_server import FileServer, serve
from tests.worker.support import submit
from tests.worker.test_secrets import make_agent, redis_dump

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
    "additionalProperties": False,
}
PAGE = (
    b"<html><head><title>Lantern</title></head><body><article><h1>Brass Ship's Lantern</h1>"
    b"<p>A lantern for the harbour, hand-made in brass. Price: 89.00 EUR.</p>"
    b"<p>It burns for twelve hours on one filling of oil.</p></article></body></html>"
)


@dataclass
class ChatServer:
    """Answers each call with the next of `answers` (message contents)."""

    answers: list[str]
    base: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def chat_server(answers: list[str]) -> AsyncIterator[ChatServer]:
    server = ChatServer(answers)

    async def complete(request: web.Request) -> web.Response:
        server.calls.append(await request.json())
        server.headers.append({k.lower(): v for k, v in request.headers.items()})
        content = server.answers[min(len(server.calls), len(server.answers)) - 1]
        usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": usage,
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    async with serve_aiohttp(app) as url:
        server.base = f"{url}/v1"
        yield server


@pytest.fixture
async def shop() -> AsyncIterator[FileServer]:
    async with serve({"lantern": (PAGE, "text/html; charset=utf-8")}) as server:
        yield server


def json_job(url: str, agent_id: str | None = None, **fmt: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "fetch",
        "input": {
            "url": url,
            "formats": ["metadata", {"type": "json", "schema": SCHEMA, **fmt}],
        },
    }
    if agent_id:
        spec["agent_id"] = agent_id
    return spec


def llm(chat: ChatServer) -> dict[str, Any]:
    return {"llm_base_url": chat.base, "llm_model": "tiny-test-model"}


async def test_a_schema_valid_object_and_the_key_stays_secret(
    settings: Settings,
    auth: dict[str, str],
    shop: FileServer,
    run_worker: RunWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = f"sk-test-{uuid.uuid4().hex}"
    answer = json.dumps({"name": "Brass Ship's Lantern", "price": 89.0})
    caplog.set_level(logging.DEBUG)
    async with chat_server([answer]) as chat, api_client(settings, **llm(chat)) as client:
        agent_id = await make_agent(client, auth, {"llm_api_key": key})
        spec = json_job(shop.url("lantern"), agent_id, prompt="The product and its price.")
        async with run_worker(**llm(chat)):
            job = await wait_for_job(client, auth, await submit(client, auth, spec))
            dump = await redis_dump(settings.resolved_redis_url)
        events = await client.get(f"/v1/jobs/{job['id']}/attempts", headers=auth)

    assert job["status"] == "succeeded", job
    assert job["result"]["json"] == {"name": "Brass Ship's Lantern", "price": 89.0}
    assert job["result"]["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "total_tokens": 110,
    }
    assert "markdown" not in job["result"]  # asked for only to feed the model
    assert set(job["result"]) == {"metadata", "json", "usage"}
    (call,) = chat.calls
    assert call["model"] == "tiny-test-model"
    assert "Price: 89.00 EUR" in call["messages"][-1]["content"]
    assert "The product and its price." in call["messages"][-1]["content"]
    assert json.loads(call["messages"][0]["content"].split(":\n", 1)[1]) == SCHEMA
    assert chat.headers[0]["authorization"] == f"Bearer {key}"
    assert [k for k, v in dump.items() if key in k or key in v] == []
    assert key not in caplog.text
    assert key not in json.dumps(job)
    assert key not in events.text


async def test_an_invalid_answer_is_repaired_once(
    settings: Settings, auth: dict[str, str], shop: FileServer, run_worker: RunWorker
) -> None:
    first = json.dumps({"name": "Lantern", "price": "89 EUR"})
    second = "```json\n" + json.dumps({"name": "Lantern", "price": 89}) + "\n```"
    async with (
        chat_server([first, second]) as chat,
        api_client(settings, **llm(chat)) as client,
        run_worker(**llm(chat)),
    ):
        job = await wait_for_job(
            client, auth, await submit(client, auth, json_job(shop.url("lantern")))
        )

    assert job["status"] == "succeeded", job
    assert job["result"]["json"] == {"name": "Lantern", "price": 89}
    assert job["result"]["usage"]["total_tokens"] == 220
    repair = chat.calls[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": first}
    assert "price: '89 EUR' is not of type 'number'" in repair[-1]["content"]


async def test_two_invalid_answers_fail_extraction_invalid(
    settings: Settings, auth: dict[str, str], shop: FileServer, run_worker: RunWorker
) -> None:
    async with (
        chat_server(["not json at all", '{"name": 1}']) as chat,
        api_client(settings, **llm(chat)) as client,
        run_worker(**llm(chat)),
    ):
        job = await wait_for_job(
            client, auth, await submit(client, auth, json_job(shop.url("lantern")))
        )

    assert job["status"] == "failed"
    assert (job["error"]["code"], job["error"]["retryable"]) == ("extraction_invalid", False)
    assert job["attempts"] == 1
    assert len(chat.calls) == 2


async def test_the_endpoint_is_judged_by_the_egress_policy(
    settings: Settings, auth: dict[str, str], shop: FileServer, run_worker: RunWorker
) -> None:
    async with chat_server(["{}"]) as chat, api_client(settings, **llm(chat)) as client:
        elsewhere = chat.base.replace("127.0.0.1", "127.0.0.2")
        async with run_worker(
            llm_base_url=elsewhere, llm_model="m", egress_allow_cidrs=["127.0.0.1/32"]
        ):
            job = await wait_for_job(
                client, auth, await submit(client, auth, json_job(shop.url("lantern")))
            )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "blocked_destination"
    assert chat.calls == []


@pytest.mark.parametrize(
    ("fmt", "code"),
    [
        ("pdf", "unknown_format"),
        ({"type": "yaml"}, "unknown_format"),
        ({"type": "json", "schema": {"type": "nothing"}}, "invalid_schema"),
        ({"type": "json", "schema": {"type": "object"}, "prompt": "x" * 10_001}, "prompt_too_long"),
    ],
)
async def test_bad_formats_are_refused_at_submit(
    client: httpx.AsyncClient, auth: dict[str, str], fmt: Any, code: str
) -> None:
    spec = {"kind": "fetch", "input": {"url": "http://127.0.0.1:9/", "formats": [fmt]}}
    response = await client.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


async def test_json_without_a_model_is_refused_at_submit(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post("/v1/jobs", json=json_job("http://127.0.0.1:9/"), headers=auth)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "llm_not_configured"

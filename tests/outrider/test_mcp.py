"""The MCP server, through the MCP SDK's own client: over streamable HTTP at /mcp on a live API,
and over stdio (`outrider mcp` as a subprocess)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from outrider.mcp_tools import TOOL_NAMES, cut
from shared.settings import Settings
from tests.conftest import RunWorker, serve_on_loopback
from tests.pages_server import PagesServer, start_pages_server

TRUTH = "we moved our main database from PostgreSQL 13 to PostgreSQL 16"


@pytest.fixture
async def pages() -> AsyncIterator[PagesServer]:
    async with start_pages_server() as server:
        yield server


@pytest.fixture
async def live_app(settings: Settings) -> AsyncIterator[str]:
    """`outrider api`'s app (the API with /mcp) served by uvicorn on loopback."""
    from outrider.app import create_app

    async with serve_on_loopback(create_app(settings)) as url:
        yield url


def over_http(base_url: str, key: str) -> Client:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(f"{base_url}/mcp", http_client=http))


def over_stdio(base_url: str, key: str) -> Client:
    env = {"OUTRIDER_URL": base_url, "OUTRIDER_API_KEY": key, "PATH": os.environ["PATH"]}
    command = StdioServerParameters(command=sys.executable, args=["-m", "outrider", "mcp"], env=env)
    return Client(command)


def text_of(result: Any) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def key_of(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


@pytest.mark.parametrize("transport", [over_http, over_stdio], ids=["http", "stdio"])
async def test_an_agent_lists_the_tools_and_scrapes_a_page(
    transport: Any,
    live_app: str,
    auth: dict[str, str],
    pages: PagesServer,
    run_worker: RunWorker,
) -> None:
    async with transport(live_app, key_of(auth)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == set(TOOL_NAMES)
        for tool in tools.values():
            assert tool.description
            assert tool.input_schema["type"] == "object"
        assert tools["scrape"].input_schema["required"] == ["url"]
        async with run_worker():
            result = await client.call_tool(
                "scrape", {"url": pages.url("/pages/blog_post"), "render": "http", "wait_s": 30}
            )
    assert not result.is_error, text_of(result)
    text = text_of(result)
    assert TRUTH in text
    assert "<p>" not in text


@pytest.mark.parametrize("transport", [over_http, over_stdio], ids=["http", "stdio"])
async def test_another_owners_job_is_refused_with_the_code(
    transport: Any, live_app: str, auth: dict[str, str], new_owner: Any
) -> None:
    theirs = await new_owner()
    async with httpx.AsyncClient(base_url=live_app, headers=theirs) as http:
        spec = {"kind": "http", "input": {"url": "http://127.0.0.1:9/"}}
        their_job = (await http.post("/v1/jobs", json=spec)).json()["id"]
    async with transport(live_app, key_of(auth)) as client:
        for tool in ("get_job", "cancel_job", "crawl_status"):
            result = await client.call_tool(tool, {"job_id": their_job})
            assert result.is_error, (tool, text_of(result))
            assert "not_found" in text_of(result)
        listed = await client.call_tool("list_jobs", {})
        assert their_job not in text_of(listed)
        bad = await client.call_tool("call_api", {"url": "http://10.0.0.1/admin", "wait_s": 0})
        assert bad.is_error
        assert "blocked_destination" in text_of(bad)


async def test_mcp_over_http_needs_a_valid_key(live_app: str) -> None:
    async with httpx.AsyncClient(base_url=live_app) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        missing = await http.post("/mcp", json=body)
        wrong = await http.post("/mcp", json=body, headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    with pytest.raises(Exception):  # noqa: B017, PT011 - the SDK's own failure, whatever it is
        async with over_http(live_app, "nope") as client:
            await client.list_tools()


async def test_a_long_result_is_cut_and_the_rest_fetched_by_offset(
    live_app: str, auth: dict[str, str], run_worker: RunWorker, pages: PagesServer
) -> None:
    async with over_http(live_app, key_of(auth)) as client:
        async with run_worker():
            first = text_of(
                await client.call_tool(
                    "scrape",
                    {"url": pages.url("/pages/blog_post"), "render": "http", "max_chars": 500},
                )
            )
        job_id = first.split()[1]
        assert "[... cut at character 500 of " in first
        assert f'get_job(job_id="{job_id}", offset=500)' in first
        rest = text_of(
            await client.call_tool("get_job", {"job_id": job_id, "offset": 500, "max_chars": 500})
        )
    assert "[... cut at character 1000 of " in rest
    full = first.split("\n\n", 1)[1].split("\n\n[... cut")[0]
    following = rest.split("\n\n", 1)[1].split("\n\n[... cut")[0]
    assert len(full) == len(following) == 500


def test_cut_says_where_to_read_on() -> None:
    job_id = str(uuid.uuid4())
    text = "x" * 1200
    assert cut(text, job_id, 0, 5000) == text
    first = cut(text, job_id, 0, 500)
    assert first.startswith("x" * 500 + "\n\n[... cut at character 500 of 1200.")
    assert cut(text, job_id, 1000, 500) == "x" * 200


def test_a_page_with_one_format_reads_as_that_format_and_several_as_json() -> None:
    from outrider.mcp_tools import content_of
    from outrider_client import Job

    base: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "kind": "scrape",
        "status": "succeeded",
        "input": {},
        "error": None,
        "attempts": 1,
        "max_attempts": 3,
        "timeout_s": 30,
        "agent_id": str(uuid.uuid4()),
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
    }
    one = {"markdown": "# Title", "render": {"mode": "http"}}
    two = {"markdown": "# Title", "links": ["http://a/"]}
    assert content_of(Job.model_validate({**base, "result": one})) == "# Title"
    assert '"links"' in content_of(Job.model_validate({**base, "result": two}))


async def test_an_agent_crawls_and_maps_a_site(
    live_app: str, auth: dict[str, str], pages: PagesServer, run_worker: RunWorker
) -> None:
    """crawl returns the crawl's id at once; crawl_status follows it to its end; map lists."""
    start = pages.url("/pages/blog_post")
    async with over_http(live_app, key_of(auth)) as client, run_worker():
        started = await client.call_tool("crawl", {"url": start, "max_depth": 0, "limit": 5})
        assert not started.is_error, text_of(started)
        job_id = text_of(started).split("job ", 1)[1].split(" ", 1)[0]
        status = ""
        for _ in range(150):
            status = text_of(await client.call_tool("crawl_status", {"job_id": job_id}))
            if f"crawl {job_id}: succeeded" in status:
                break
            await asyncio.sleep(0.2)
        mapped = await client.call_tool("map", {"url": start, "wait_s": 30})
    assert f"crawl {job_id}: succeeded" in status, status
    assert start in status
    assert not mapped.is_error, text_of(mapped)
    assert "succeeded" in text_of(mapped)

"""The `fetch` job against real local servers: formats, limits, redirects, errors, the pool.

Most tests call the engine directly with an EngineContext (fast, and the error is right
there); the first ones go through the API and a worker, as a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from shared.egress import EgressPolicy
from shared.models import Agent, Job
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import start_target_server, wait_for_job
from tests.pages_server import MIB, PagesServer, start_pages_server
from tests.worker.support import submit
from worker.engines.base import EngineContext
from worker.engines.fetch import run_fetch
from worker.http_client import create_session
from worker.retry import JobError, classify

ALL_FORMATS = ["markdown", "text", "html", "raw_html", "links", "metadata"]


def fetch_job(url: str, **input_fields: Any) -> dict[str, Any]:
    return {"kind": "fetch", "input": {"url": url, **input_fields}}


@pytest.fixture
async def pages() -> AsyncIterator[PagesServer]:
    async with start_pages_server() as server:
        yield server


@contextlib.asynccontextmanager
async def engine(
    settings: Settings, allow_cidrs: list[str] | None = None, **overrides: Any
) -> AsyncIterator[EngineContext]:
    """A context like the runner's, for one fetch job at a time (set `ctx.job.input`)."""
    policy = EgressPolicy(allow_cidrs or settings.egress_allow_cidrs, ["1-65535"])
    session = create_session(policy)
    job = Job(kind="fetch", input={}, timeout_s=10.0, max_attempts=1, attempts=1)
    agent = Agent(name="test", headers={}, allowed_domains=[], blocked_domains=[])
    worker_settings = settings.model_copy(update=overrides)
    try:
        yield EngineContext(
            job=job, agent=agent, secrets={}, settings=worker_settings, policy=policy, http=session
        )
    finally:
        await session.close()


async def fetch(ctx: EngineContext, url: str, **input_fields: Any) -> dict[str, Any]:
    ctx.job.input = {"url": url, **input_fields}
    return await run_fetch(ctx)


async def fetch_error(ctx: EngineContext, url: str, **input_fields: Any) -> JobError:
    """The error the job would fail with (as the runner classifies it)."""
    try:
        await fetch(ctx, url, **input_fields)
    except Exception as exc:
        return classify(exc)
    raise AssertionError(f"fetching {url} succeeded")


# Through the API and a worker


async def test_an_article_through_the_api(
    client: httpx.AsyncClient, auth: dict[str, str], pages: PagesServer, run_worker: RunWorker
) -> None:
    schema = {"headline": "h1", "topics": {"selector": ".tags a", "all": True}}
    spec = fetch_job(pages.url("/pages/news_article"), formats=ALL_FORMATS, extract=schema)
    async with run_worker():
        job = await wait_for_job(client, auth, await submit(client, auth, spec))

    assert job["status"] == "succeeded", job
    result = job["result"]
    assert set(result) == {*ALL_FORMATS, "extract"}
    assert "## A long road to approval" in result["markdown"]
    for boilerplate in ("We use cookies", "Most read", "All rights reserved", "About time too"):
        assert boilerplate not in result["markdown"]
    internal = {link["url"] for link in result["links"]["internal"]}
    external = {link["url"] for link in result["links"]["external"]}
    assert pages.url("/news/local") in internal
    assert "https://twitter.com/nfcourier" in external
    meta = result["metadata"]
    assert meta["final_url"] == pages.url("/pages/news_article")
    assert (meta["status_code"], meta["charset"]) == (200, "utf_8")
    assert meta["content_type"] == "text/html; charset=utf-8"
    assert meta["bytes"] == len(Path("tests/fixtures/pages/news_article.html").read_bytes())
    assert meta["language"] == "en-GB"
    assert meta["og"]["type"] == "article"
    assert set(meta["timings_ms"]) == {"fetch", "decode", "parse"}
    assert result["extract"]["topics"] == ["Flooding", "Northfield Council"]


async def test_a_corrupt_pdf_fails_at_once_through_the_api(
    client: httpx.AsyncClient, auth: dict[str, str], pages: PagesServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        job = await wait_for_job(
            client, auth, await submit(client, auth, fetch_job(pages.url("/pdf")))
        )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "document_unreadable"
    assert job["error"]["details"] == {"reason": "corrupt"}
    assert job["attempts"] == 1


async def test_a_redirect_to_a_forbidden_address_never_reaches_it(
    client: httpx.AsyncClient, auth: dict[str, str], pages: PagesServer, run_worker: RunWorker
) -> None:
    async with start_target_server(host="127.0.0.2") as canary:
        bounce = pages.url(f"/to?url={canary.url('/ok')}")
        async with run_worker(egress_allow_cidrs=["127.0.0.1/32"]):
            job = await wait_for_job(client, auth, await submit(client, auth, fetch_job(bounce)))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "blocked_destination"
    assert pages.hits["/to"] >= 1
    assert sum(canary.hits.values()) == 0


async def test_the_worker_closes_its_parse_pool(
    client: httpx.AsyncClient, auth: dict[str, str], pages: PagesServer, run_worker: RunWorker
) -> None:
    from worker.extract.pool import shared_pool

    assert shared_pool() is None  # no other holder: the worker owns it
    async with run_worker():
        job_id = await submit(client, auth, fetch_job(pages.url("/pages/blog_post")))
        assert (await wait_for_job(client, auth, job_id))["status"] == "succeeded"
        pool = shared_pool()
        assert pool is not None
        children = pool.pids()
    assert children
    assert shared_pool() is None
    assert not [pid for pid in children if psutil.pid_exists(pid)]


# The engine itself


async def test_a_chain_of_three_redirects(settings: Settings, pages: PagesServer) -> None:
    async with engine(settings) as ctx:
        result = await fetch(ctx, pages.url("/chain/3"), formats=["metadata"])
    assert result["metadata"]["final_url"] == pages.url("/chain/0")
    assert result["metadata"]["title"].startswith("City council approves")
    assert [pages.hits[f"/chain/{n}"] for n in (3, 2, 1, 0)] == [1, 1, 1, 1]


async def test_ten_redirects_are_followed_and_eleven_are_too_many(
    settings: Settings, pages: PagesServer
) -> None:
    async with engine(settings) as ctx:
        assert (await fetch(ctx, pages.url("/chain/10"), formats=["text"]))["text"]
        error = await fetch_error(ctx, pages.url("/chain/11"))
    assert (error.code, error.retryable) == ("too_many_redirects", False)
    assert pages.hits["/chain/0"] == 1  # only the ten-hop fetch got there


async def test_a_redirect_to_a_metadata_address_is_blocked(
    settings: Settings, pages: PagesServer
) -> None:
    async with engine(settings) as ctx:
        for target in ("http://169.254.169.254/latest/meta-data/", "http://10.255.255.1/"):
            error = await fetch_error(ctx, pages.url(f"/to?url={target}"))
            assert (error.code, error.retryable) == ("blocked_destination", False)


async def test_a_gzip_bomb_is_stopped_at_the_cap(settings: Settings, pages: PagesServer) -> None:
    cap = 2 * MIB
    async with engine(settings, fetch_max_bytes=cap) as ctx:
        tracemalloc.start()
        try:
            error = await fetch_error(ctx, pages.url("/gzip-bomb?mb=256"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (error.code, error.retryable) == ("response_too_large", False)
    assert pages.sent["/gzip-bomb"] < 512 * 1024  # 256 MiB inflated, a fraction of 1 MiB sent
    assert peak < 4 * cap, f"peak {peak / MIB:.1f} MiB"


@pytest.mark.parametrize("declare", [False, True])
async def test_a_huge_page_is_stopped_at_the_cap(
    settings: Settings, pages: PagesServer, declare: bool
) -> None:
    async with engine(settings, fetch_max_bytes=MIB) as ctx:
        error = await fetch_error(ctx, pages.url(f"/huge?mb=64&declare={int(declare) or ''}"))
    assert (error.code, error.details) == ("response_too_large", {"max_bytes": MIB})
    await asyncio.sleep(0.2)  # let the server notice the hang-up
    assert pages.sent["/huge"] < 16 * MIB  # the download stopped, far short of 64 MiB


async def test_binary_content_is_refused(settings: Settings, pages: PagesServer) -> None:
    async with engine(settings) as ctx:
        error = await fetch_error(ctx, pages.url("/image"))
    assert (error.code, error.retryable) == ("unsupported_content_type", False)


async def test_pages_without_a_header_charset_decode_right(
    settings: Settings, pages: PagesServer
) -> None:
    async with engine(settings) as ctx:
        latin = await fetch(ctx, pages.url("/latin1"), formats=["text", "metadata"])
        cyrillic = await fetch(ctx, pages.url("/cp1251"), formats=["text", "metadata"])
    assert "« C'est un grand jour pour le quartier »" in latin["text"]
    assert latin["metadata"]["charset"] == "cp1252"  # iso-8859-1, read as browsers do
    assert "Городской совет утвердил строительство" in cyrillic["text"]
    assert (cyrillic["metadata"]["charset"], cyrillic["metadata"]["title"]) == (
        "cp1251",
        "Набережная",
    )


async def test_json_text_and_untyped_responses(settings: Settings, pages: PagesServer) -> None:
    async with engine(settings) as ctx:
        doc = await fetch(ctx, pages.url("/json"), formats=["markdown", "metadata"])
        plain = await fetch(ctx, pages.url("/plain"), formats=["text"])
        untyped = await fetch(ctx, pages.untyped_url, formats=["text", "metadata"])
    assert doc["markdown"].startswith('```json\n{\n  "name": "Outrider"')
    assert doc["metadata"]["content_type"].startswith("application/json")
    assert plain["text"] == "Just some text.\nTwo lines."
    assert untyped["text"] == "No content type here."
    assert untyped["metadata"]["content_type"] == "text/html"


async def test_a_slow_page_times_out(settings: Settings, pages: PagesServer) -> None:
    async with engine(settings) as ctx:
        started = time.monotonic()
        error = await fetch_error(ctx, pages.url("/slow?s=5"), timeout_s=0.3)
    assert (error.code, error.retryable) == ("timeout", True)
    assert time.monotonic() - started < 3  # the attempt and its quick retry, not 5 s


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (404, "http_4xx", False),
        (410, "http_4xx", False),
        (429, "http_429", True),
        (503, "http_503", True),
        (501, "http_5xx", False),
    ],
)
async def test_http_errors(
    settings: Settings, pages: PagesServer, status: int, code: str, retryable: bool
) -> None:
    async with engine(settings) as ctx:
        error = await fetch_error(ctx, pages.url(f"/status/{status}"))
    assert (error.code, error.retryable) == (code, retryable)
    assert error.retry_after_s == (1.0 if status in (429, 503) else None)


async def test_a_bad_selector_fails_before_any_request(
    settings: Settings, pages: PagesServer
) -> None:
    async with engine(settings) as ctx:
        error = await fetch_error(ctx, pages.url("/pages/news_article"), extract={"x": "div["})
    assert (error.code, error.retryable) == ("invalid_extract", False)
    assert pages.hits["/pages/news_article"] == 0

"""`outrider scrape`, `submit`, `watch` and `usage` against a running API (uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from outrider.cli import app
from tests.conftest import RunWorker
from tests.helpers import TargetServer
from tests.pages_server import PagesServer, start_pages_server


@pytest.fixture
async def pages() -> AsyncIterator[PagesServer]:
    async with start_pages_server() as server:
        yield server


async def run(*args: str, key: str | None = None, url: str | None = None) -> Result:
    """The CLI in a thread (the API under test runs on this event loop)."""
    env = {"OUTRIDER_URL": url or "", "OUTRIDER_API_KEY": key or ""}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


def key_of(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


async def test_scrape_prints_the_pages_markdown(
    live_api: str, auth: dict[str, str], pages: PagesServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        result = await run(
            "scrape", pages.url("/pages/blog_post"), "--render", "http",
            key=key_of(auth), url=live_api,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "we moved our main database from PostgreSQL 13 to PostgreSQL 16" in result.stdout
    assert "<p>" not in result.stdout


async def test_submit_waits_and_watch_prints_the_events(
    live_api: str,
    auth: dict[str, str],
    target: TargetServer,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"kind": "http", "input": {"url": target.url("/json")}}))
    async with run_worker():
        submitted = await run("submit", str(spec), "--wait", "--url", live_api, key=key_of(auth))
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert job["status"] == "succeeded"
    watched = await run("watch", job["id"], "--key", key_of(auth), url=live_api)
    assert watched.exit_code == 0, watched.output
    assert [line.split()[0] for line in watched.stdout.splitlines()] == [
        "queued",
        "started",
        "succeeded",
    ]


async def test_a_refused_key_exits_1_with_the_code(live_api: str, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"kind": "http", "input": {"url": "http://127.0.0.1:9/"}}))
    result = await run("submit", str(spec), key="wrong", url=live_api)
    assert result.exit_code == 1
    assert "unauthorized" in result.output


async def test_usage_prints_the_days_and_kinds(
    live_api: str,
    auth: dict[str, str],
    target: TargetServer,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"kind": "http", "input": {"url": target.url("/json")}}))
    async with run_worker():
        submitted = await run("submit", str(spec), "--wait", "--url", live_api, key=key_of(auth))
    assert submitted.exit_code == 0, submitted.output
    table = await run("usage", key=key_of(auth), url=live_api)
    as_json = await run("usage", "--json", "--start", "2020-01-01", key=key_of(auth), url=live_api)
    bad = await run("usage", "--end", "tomorrow", key=key_of(auth), url=live_api)

    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[1].split() == [
        "day", "kind", "jobs", "succeeded", "failed", "pages", "bytes", "browser_s",
    ]  # fmt: skip
    day, kind, jobs, succeeded = lines[2].split()[:4]
    assert (kind, jobs, succeeded) == ("http", "1", "1")
    assert lines[-1].split()[:3] == ["total", "1", "1"]
    answer = json.loads(as_json.stdout)
    assert answer["start"] == "2020-01-01"
    assert answer["days"][0]["day"] == day
    assert answer["totals"]["bytes_fetched"] > 0
    assert bad.exit_code == 2
    assert "YYYY-MM-DD" in bad.output

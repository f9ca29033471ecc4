"""`max_age_s`: a repeat of the same page by the same owner is answered from the database,
without a request, as a job with one attempt; other owners, options or ages fetch again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from shared.result_cache import cache_key, normalize_url
from tests.conftest import NewOwner, RunWorker
from tests.helpers import wait_for_job
from tests.worker.file_server import FileServer, serve
from tests.worker.support import attempts_of, submit

PAGE = b"<html><head><title>Tides</title></head><body><p>High water at 06:12.</p></body></html>"


@pytest.fixture
async def site() -> AsyncIterator[FileServer]:
    async with serve({"tides": (PAGE, "text/html"), "other": (PAGE, "text/html")}) as server:
        yield server


def page_job(url: str, **input_fields: Any) -> dict[str, Any]:
    return {"kind": "fetch", "input": {"url": url, "formats": ["markdown"], **input_fields}}


async def run(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, *specs: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each spec in turn, to its end, by a worker started for it (a restart between them)."""
    jobs = []
    for spec in specs:
        async with run_worker():
            jobs.append(await wait_for_job(client, auth, await submit(client, auth, spec)))
    return jobs


async def test_a_repeat_is_answered_from_the_cache_without_a_request(
    client: httpx.AsyncClient, auth: dict[str, str], site: FileServer, run_worker: RunWorker
) -> None:
    url = site.url("tides")
    first, second = await run(
        client,
        auth,
        run_worker,
        page_job(url, max_age_s=600),
        page_job(url.replace("http://", "HTTP://") + "#today", max_age_s=600),
    )
    assert first["status"] == second["status"] == "succeeded", (first, second)
    assert first["result"]["cached"] is False
    assert second["result"]["cached"] is True
    assert second["result"]["markdown"] == first["result"]["markdown"]
    cached_at = datetime.fromisoformat(second["result"]["metadata"]["cached_at"])
    assert cached_at <= datetime.fromisoformat(second["started_at"])
    assert site.hits["tides"] == 1
    assert site.hits["robots.txt"] == 1  # the first job's: the cached one asked nothing
    attempts = await attempts_of(client, auth, second["id"])
    assert [a["outcome"] for a in attempts] == ["succeeded"]


async def test_other_owners_options_and_ages_fetch_again(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    new_owner: NewOwner,
    site: FileServer,
    run_worker: RunWorker,
) -> None:
    url = site.url("other")
    stranger = await new_owner()
    await run(client, auth, run_worker, page_job(url, max_age_s=600))
    async with run_worker():
        theirs = await wait_for_job(
            client, stranger, await submit(client, stranger, page_job(url, max_age_s=600))
        )
    (with_text, no_cache, zero_age) = await run(
        client,
        auth,
        run_worker,
        page_job(url, max_age_s=600, formats=["markdown", "text"]),
        page_job(url),
        page_job(url, max_age_s=0),
    )
    assert theirs["result"]["cached"] is False  # another owner's result is not theirs
    assert with_text["result"]["cached"] is False  # other output options
    assert "cached" not in no_cache["result"]
    assert "cached" not in zero_age["result"]
    assert site.hits["other"] == 5


def test_the_key_normalizes_the_url_and_ignores_what_does_not_change_the_answer() -> None:
    base: dict[str, Any] = {
        "url": "HTTP://Example.COM:80/a?b=1#top",
        "formats": ["markdown"],
        "max_age_s": 5,
    }
    same = {"url": "http://example.com/a?b=1", "formats": ["markdown"], "timeout_s": 9}
    assert normalize_url(base["url"]) == "http://example.com/a?b=1"
    assert normalize_url("https://example.com") == "https://example.com/"
    assert cache_key("fetch", base) == cache_key("fetch", same)
    assert cache_key("fetch", base) != cache_key("scrape", base)
    assert cache_key("fetch", base) != cache_key("fetch", {**base, "formats": ["text"]})
    assert cache_key("fetch", base) != cache_key(
        "fetch", {**base, "url": "http://example.com/a?b=2"}
    )

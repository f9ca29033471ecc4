"""Hostile pages against a browser worker: pages that eat memory, and pages that leave for
where the worker may not go (a forbidden address, another scheme) after or while loading.

The browser worker may reach 127.0.0.1 only; the canary on 127.0.0.2 counts every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker.support import attempts_of, submit
from tests.worker.test_browser_site import (
    Site,
    browser_worker,
    chromium_processes,
    render_job,
    serve_site,
)

MB = 1024 * 1024
# Grows by about 20 MB every 50 ms until stopped (V8's heap, as ordinary scripts use it).
HOG = "const a = []; setInterval(() => { for (let i = 0; i < 5; i++) a.push(new Array(1e6).fill(i)); }, 50);"  # noqa: E501
MARGIN_MB = 200  # what the page may grow between two samples of the watcher, and then some


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serve_site() as served:
        yield served


def _own_and_file(pid: int) -> tuple[int, int]:
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name.startswith("Rss"):
                fields[name] = int(value.split()[0]) * 1024
    return fields.get("RssAnon", 0) + fields.get("RssShmem", 0), fields.get("RssFile", 0)


@dataclass
class Peaks:
    """The largest figures seen: the browser's memory (each process's own pages, the binary
    once, as the README defines it) and the largest renderer's own pages."""

    total: int = 0
    renderer: int = 0

    def sample(self) -> None:
        own_total, files = 0, 0
        for process in chromium_processes():
            with contextlib.suppress(psutil.Error):
                own, file_backed = _own_and_file(process.pid)
                own_total, files = own_total + own, max(files, file_backed)
                if "--type=renderer" in process.cmdline():
                    self.renderer = max(self.renderer, own)
        self.total = max(self.total, own_total + files)


@contextlib.asynccontextmanager
async def sampling() -> AsyncIterator[Peaks]:
    """Sample the browser's memory every 50 ms while the block runs."""
    peaks, stop = Peaks(), asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            await asyncio.to_thread(peaks.sample)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield peaks
    finally:
        stop.set()
        await task


async def run(client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any]) -> Any:
    return await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=60)


def html_page(site: Site, body: str) -> str:
    """A URL on the site that serves `body` (the site's /html route echoes it)."""
    return site.url("/html?" + httpx.QueryParams({"body": body}).__str__())


def hungry_page(site: Site) -> dict[str, Any]:
    """A job for a page that eats memory for as long as the job waits (up to 20 s)."""
    url = html_page(site, f"<p>hungry</p><script>{HOG}</script>")
    return render_job(url, wait_for={"ms": 20_000})


async def test_a_page_over_its_memory_limit_is_stopped_and_its_neighbour_is_not(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    hog = {**hungry_page(site), "max_attempts": 3}
    calm = render_job(site.url("/spa?ms=300"), formats=["markdown"])
    limits = {"browser_page_max_mb": 256, "browser_max_rss_mb": 8192}
    async with browser_worker(run_worker, **limits), sampling() as peaks:
        hungry, neighbour = await asyncio.gather(run(client, auth, hog), run(client, auth, calm))
        attempts = await attempts_of(client, auth, hungry["id"])

    assert (hungry["status"], hungry["error"]["code"]) == ("failed", "page_too_large")
    assert hungry["error"]["retryable"] is False
    assert hungry["error"]["details"]["limit_mb"] == 256
    assert [a["error_code"] for a in attempts] == ["page_too_large"]  # it would only eat again
    assert neighbour["status"] == "succeeded", neighbour
    assert "The ferry leaves at nine" in neighbour["result"]["markdown"]
    assert peaks.renderer <= (256 + MARGIN_MB) * MB, peaks  # stopped on its way up


async def test_the_browser_stays_under_its_limit_while_a_page_grows(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    hog = {**hungry_page(site), "max_attempts": 1}
    calm = render_job(site.url("/spa?fetch=400"), formats=["markdown"])
    limits = {"browser_page_max_mb": 4096, "browser_max_rss_mb": 1024}  # the browser's binds
    async with browser_worker(run_worker, **limits), sampling() as peaks:
        hungry, neighbour = await asyncio.gather(run(client, auth, hog), run(client, auth, calm))
        after = await run(client, auth, calm)  # the same browser carries on

    assert (hungry["status"], hungry["error"]["code"]) == ("failed", "page_too_large")
    assert hungry["error"]["retryable"] is False
    assert "the largest" in hungry["error"]["message"]  # within its own limit, but the largest
    assert hungry["error"]["details"]["browser_mb"] > 1024
    assert neighbour["status"] == "succeeded", neighbour
    assert after["status"] == "succeeded", after
    assert peaks.total <= (1024 + MARGIN_MB) * MB, peaks
    assert peaks.total > 700 * MB  # it did grow to the limit, and was stopped there


def leaving(site: Site, how: str, to: str) -> str:
    """A page that sends its visitor on to `to` once loaded: by meta refresh or by script."""
    if how == "meta":
        return html_page(site, f'<meta http-equiv="refresh" content="0; url={to}"><p>moving</p>')
    script = f"setTimeout(() => {{ location.href = {to!r}; }}, 100);"
    return html_page(site, f"<p>moving</p><script>{script}</script>")


async def test_a_page_that_goes_to_a_forbidden_address_fails_and_names_it(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    canary = f"127.0.0.2:{site.canary.tcp_port}"
    cases = {  # the URL the job starts from -> the forbidden URL it ends up asking for
        leaving(site, "meta", f"http://{canary}/meta"): f"http://{canary}/meta",
        leaving(site, "location", f"http://{canary}/script"): f"http://{canary}/script",
        leaving(site, "location", f"https://{canary}/tls"): f"https://{canary}/tls",
        leaving(site, "location", site.url(f"/redirect?to=http://{canary}/hop")): (
            f"http://{canary}/hop"
        ),
        site.url(f"/redirect?to=http://{canary}/first"): f"http://{canary}/first",
    }
    specs = [{**render_job(url, formats=["markdown"]), "max_attempts": 3} for url in cases]
    async with browser_worker(run_worker):
        jobs = await asyncio.gather(*(run(client, auth, spec) for spec in specs))
        attempts = [await attempts_of(client, auth, job["id"]) for job in jobs]

    for job, forbidden, tries in zip(jobs, cases.values(), attempts, strict=True):
        assert (job["status"], job["error"]["code"]) == ("failed", "blocked_destination"), job
        assert job["error"]["retryable"] is False
        assert forbidden in job["error"]["message"]
        assert job["error"]["details"]["url"] == forbidden
        assert job["result"] is None  # not the proxy's refusal passed off as the page
        assert len(tries) == 1
    assert site.canary.hits == 0


async def test_a_page_sent_to_another_scheme_fails_without_retries(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    starts = [
        *(site.url("/redirect?" + str(httpx.QueryParams({"to": to}))) for to in (
            "file:///etc/passwd", "data:text/html,<h1>not the page</h1>", "javascript:alert(1)",
        )),
        leaving(site, "location", site.url("/redirect?to=file:///etc/passwd")),
    ]  # fmt: skip
    specs = [{**render_job(url), "max_attempts": 3} for url in starts]
    async with browser_worker(run_worker):
        jobs = await asyncio.gather(*(run(client, auth, spec) for spec in specs))
        attempts = [await attempts_of(client, auth, job["id"]) for job in jobs]

    for job, tries in zip(jobs, attempts, strict=True):
        assert job["status"] == "failed", job
        assert job["error"]["code"] in {"blocked_destination", "invalid_url"}, job["error"]
        assert job["error"]["retryable"] is False
        assert len(tries) == 1
        assert job["result"] is None

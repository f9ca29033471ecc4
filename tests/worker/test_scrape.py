"""`scrape` jobs: fetch first, escalate to the browser when the page needs it, say why."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aiohttp import web

from tests.conftest import RunWorker
from tests.helpers import serve_aiohttp, wait_for_job
from tests.worker.support import submit
from tests.worker.test_browser_site import browser_worker
from worker.engines.scrape import needs_browser

ARTICLE = "<p>" + " ".join(f"Sentence {i} of a plain server-rendered article." for i in range(40))
APP_SHELL = """<!doctype html><html><head><title>app</title></head><body>
<div id="root"></div>
<script>
  const p = document.createElement('p');
  p.textContent = 'Rendered by the app: ' + 'lots of words here '.repeat(30);
  document.getElementById('root').appendChild(p);
</script></body></html>"""
# What users of single-page apps saw: the shell renders after load, or never (its bundle failed).
LATE_SHELL = APP_SHELL.replace("<script>", "<script>setTimeout(() => {").replace(
    "</script>", "}, 600);</script>"
)
DEAD_SHELL = """<!doctype html><html><head><title>app</title></head><body>
<noscript>You need to enable JavaScript to run this app.</noscript><div id="root"></div>
<script src="/bundle-that-fails.js"></script></body></html>"""


@contextlib.asynccontextmanager
async def pages() -> AsyncIterator[str]:
    async def article(request: web.Request) -> web.Response:
        body = (
            f"<html><head><title>a</title></head><body><article>{ARTICLE}</article></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def shell(request: web.Request) -> web.Response:
        return web.Response(text=APP_SHELL, content_type="text/html")

    async def late_shell(request: web.Request) -> web.Response:
        return web.Response(text=LATE_SHELL, content_type="text/html")

    async def dead_shell(request: web.Request) -> web.Response:
        return web.Response(text=DEAD_SHELL, content_type="text/html")

    app = web.Application()
    app.router.add_get("/article", article)
    app.router.add_get("/shell", shell)
    app.router.add_get("/late-shell", late_shell)
    app.router.add_get("/dead-shell", dead_shell)
    async with serve_aiohttp(app) as url:
        yield url


def scrape(url: str, render: str = "auto") -> dict[str, Any]:
    return {"kind": "scrape", "input": {"url": url, "formats": ["markdown"], "render": render}}


def test_the_escalation_rule() -> None:
    html = {"content_type": "text/html; charset=utf-8"}
    shell = {"metadata": html, "raw_html": APP_SHELL, "text": ""}
    assert needs_browser(shell) == "app_shell"
    thin = {"metadata": html, "raw_html": "<p>hi</p>", "text": "hi"}
    assert needs_browser(thin) == "too_little_text"
    full = {"metadata": html, "raw_html": ARTICLE, "text": ARTICLE}
    assert needs_browser(full) is None
    data = {"metadata": {"content_type": "application/json"}, "raw_html": "{}", "text": "{}"}
    assert needs_browser(data) is None


async def test_auto_fetches_a_plain_page_and_renders_an_app_shell(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with pages() as base, browser_worker(run_worker):
        plain_id = await submit(client, auth, scrape(f"{base}/article"))
        shell_id = await submit(client, auth, scrape(f"{base}/shell"))
        plain = await wait_for_job(client, auth, plain_id, timeout_s=60)
        shell = await wait_for_job(client, auth, shell_id, timeout_s=60)

    assert plain["status"] == "succeeded", plain
    assert plain["result"]["render"] == {"mode": "http", "reason": "enough_content"}
    assert "Sentence 39" in plain["result"]["markdown"]
    assert set(plain["result"]) == {"markdown", "render"}  # only what was asked for

    assert shell["status"] == "succeeded", shell
    assert shell["result"]["render"] == {"mode": "browser", "reason": "app_shell"}
    assert "Rendered by the app" in shell["result"]["markdown"]


async def test_http_mode_never_escalates_and_runs_on_the_default_queue(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with pages() as base, run_worker(host_rate_per_s=0):
        job_id = await submit(client, auth, scrape(f"{base}/shell", render="http"))
        job = await wait_for_job(client, auth, job_id, timeout_s=30)
    assert job["status"] == "succeeded", job
    assert job["result"]["render"] == {"mode": "http", "reason": "requested"}
    assert "Rendered by the app" not in job["result"]["markdown"]


async def test_auto_waits_for_an_app_that_renders_late_and_fails_one_that_never_does(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with pages() as base, browser_worker(run_worker):
        late_id = await submit(client, auth, scrape(f"{base}/late-shell"))
        dead_spec = scrape(f"{base}/dead-shell")
        dead_spec["input"]["settle_ms"] = 1000
        dead_id = await submit(client, auth, {**dead_spec, "max_attempts": 1})
        late = await wait_for_job(client, auth, late_id, timeout_s=60)
        dead = await wait_for_job(client, auth, dead_id, timeout_s=60)

    assert late["status"] == "succeeded", late
    assert late["result"]["render"] == {"mode": "browser", "reason": "app_shell"}
    assert "Rendered by the app" in late["result"]["markdown"]
    # Its <noscript> text is all there is: not a result, a retryable failure.
    assert (dead["status"], dead["error"]["code"]) == ("failed", "empty_page")
    assert dead["error"]["retryable"] is True

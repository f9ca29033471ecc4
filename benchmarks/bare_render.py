"""Bare baselines for `render`: a Playwright loop driving Debian's Chromium, N pages at once.

- `--mode browser`: one browser for the whole run and a fresh context per page (the
  isolation Outrider keeps between jobs);
- `--mode launch`: a browser launched (and closed) per page, the naive loop.

Per page: open it (viewport 1280x800, service workers blocked), `goto(wait_until="load")`,
let it settle by Outrider's rule (no request in flight for 500 ms and no DOM change for 300 ms,
at most 5 s: a MutationObserver started by an init script, requests counted from Playwright's
events), read `page.content()`, close; then the markdown of the main content with the same
trafilatura call Outrider makes, in a thread. The same Chromium flags as Outrider's browser
workers, but no egress proxy, no request routing, no memory watcher, no database and no queue.

    python -m benchmarks.bare_render --base http://127.0.0.1:PORT --pages 100 --mode browser
Prints one JSON object: pages, seconds, pages_per_s, markdown_chars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import trafilatura
from playwright.async_api import Browser, BrowserType, Page, Request, async_playwright

from worker.browser import DISABLE_FEATURES_FLAG  # the same features off as Outrider's browser

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync", "--disable-quic", DISABLE_FEATURES_FLAG,
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}
SETTLE_S, NETWORK_QUIET_S, DOM_QUIET_S = 5.0, 0.5, 0.3
OBSERVE = """(() => { const s = {last: performance.now()}; window.__settle = s;
  new MutationObserver(() => { s.last = performance.now(); }).observe(document,
    {subtree: true, childList: true, attributes: true, characterData: true}); })();"""


class Requests:
    """The page's requests in flight, and when the last one ended."""

    def __init__(self, page: Page) -> None:
        self.in_flight: set[Request] = set()
        self.since = time.monotonic()
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    def started(self, request: Request) -> None:
        self.in_flight.add(request)

    def ended(self, request: Request) -> None:
        self.in_flight.discard(request)
        if not self.in_flight:
            self.since = time.monotonic()


async def settle(page: Page, requests: Requests) -> None:
    deadline = time.monotonic() + SETTLE_S
    while (now := time.monotonic()) < deadline:
        dom_quiet = await page.evaluate("performance.now() - window.__settle.last") / 1000
        network = 0.05 if requests.in_flight else NETWORK_QUIET_S - (now - requests.since)
        wait = max(network, DOM_QUIET_S - dom_quiet)
        if wait <= 0:
            return
        await asyncio.sleep(min(max(wait, 0.02), deadline - now))


def markdown(html: str, url: str) -> str:
    found = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_comments=False,
        include_formatting=True,
        include_tables=True,
        include_links=False,
        include_images=False,
    )
    return found or ""


async def launch(chromium: BrowserType, path: str) -> Browser:
    return await chromium.launch(
        executable_path=path, args=FLAGS, headless=True, chromium_sandbox=False
    )


async def render(browser: Browser, url: str) -> str:
    context = await browser.new_context(viewport=VIEWPORT, service_workers="block")  # type: ignore[arg-type]
    try:
        await context.add_init_script(OBSERVE)
        page = await context.new_page()
        requests = Requests(page)
        await page.goto(url, wait_until="load")
        await settle(page, requests)
        html = await page.content()
    finally:
        await context.close()
    return await asyncio.to_thread(markdown, html, url)


async def render_launching(chromium: BrowserType, path: str, url: str) -> str:
    browser = await launch(chromium, path)
    try:
        return await render(browser, url)
    finally:
        await browser.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with async_playwright() as playwright:
        chromium = playwright.chromium
        browser = await launch(chromium, args.chromium) if args.mode == "browser" else None

        async def one(url: str) -> str:
            if browser is not None:
                return await render(browser, url)
            return await render_launching(chromium, args.chromium, url)

        async def loop(urls: list[str]) -> list[str]:
            queue, done = list(reversed(urls)), []

            async def worker() -> None:
                while queue:
                    done.append(await one(queue.pop()))

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            return done

        await loop([f"{args.base}/js/{n}" for n in range(args.warmup)])
        started = time.perf_counter()
        pages = await loop([f"{args.base}/js/{n}" for n in range(args.pages)])
        seconds = time.perf_counter() - started
        if browser is not None:
            await browser.close()
    return {
        "pages": len(pages),
        "seconds": seconds,
        "pages_per_s": len(pages) / seconds,
        "markdown_chars": sum(map(len, pages)) / len(pages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--mode", choices=["browser", "launch"], default="browser")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()

"""Settling: after `load`, wait until the page stops changing, and tell a page that shows nothing.

Settled means no request in flight for NETWORK_QUIET_S, no DOM change for DOM_QUIET_MS and
something to show (text or an image: an app may fill its empty shell after a timer), at most
`settle_ms`. Requests are counted from Playwright's request events (every request the page
makes, frames and workers included: scripts imported late and images too, which an in-page
counter of fetch/XHR misses); EventSource and WebSocket streams are meant to stay open and do
not count. DOM changes are seen by a MutationObserver that an init script starts before the
page's own scripts; the wait asks the page how long it has been quiet and sleeps for the
longer of the two remainders, so a page that settles at once costs a round trip or two.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED

from playwright.async_api import BrowserContext, Page, Request
from playwright.async_api import Error as PlaywrightError

NETWORK_QUIET_S = 0.5
DOM_QUIET_MS = 300
MIN_SLEEP_S = 0.02
BLANK_POLL_S = 0.1
STREAMS = frozenset({"eventsource", "websocket"})
STATE = "__outriderSettle"

INIT_SCRIPT = f"""(() => {{
  if (window.top !== window || Object.prototype.hasOwnProperty.call(window, "{STATE}")) return;
  const state = {{last: performance.now()}};
  Object.defineProperty(window, "{STATE}", {{value: state}});
  new MutationObserver(() => {{ state.last = performance.now(); }}).observe(document, {{
    subtree: true, childList: true, attributes: true, characterData: true}});
}})();"""
# Blank: no visible text (a <noscript> message is not shown when scripts run) and nothing
# else to look at.
BLANK = """(() => {
  const root = document.body || document.documentElement;
  if (!root) return true;
  if ((root.innerText ?? root.textContent ?? "").trim()) return false;
  return !root.querySelector("img, picture, video, canvas, svg, iframe, frame, embed, object");
})()"""
# [ms since the last DOM change, blank (only asked once quiet long enough)]
DOM_STATE = f"""quietMs => {{
  const s = window.{STATE};
  const quiet = s ? performance.now() - s.last : 0;
  return [quiet, quiet >= quietMs && {BLANK}];
}}"""
SHOWS_NOTHING = f"() => {BLANK}"


async def prepare(context: BrowserContext) -> None:
    """Start the DOM observer in every page of `context` (before any page loads)."""
    await context.add_init_script(INIT_SCRIPT)


class Traffic:
    """The page's requests in flight, and when the last one ended."""

    def __init__(self, page: Page) -> None:
        self.in_flight: set[Request] = set()
        self.quiet_since = asyncio.get_running_loop().time()
        self.idle = asyncio.Event()
        self.idle.set()
        page.context.on("request", self._started)  # the page's and any popup's
        page.context.on("requestfinished", self._ended)
        page.context.on("requestfailed", self._ended)

    def _started(self, request: Request) -> None:
        if request.resource_type not in STREAMS:
            self.in_flight.add(request)
            self.idle.clear()

    def _ended(self, request: Request) -> None:
        if request in self.in_flight:
            self.in_flight.discard(request)
            if not self.in_flight:
                self.quiet_since = asyncio.get_running_loop().time()
                self.idle.set()

    def quiet_needed(self, now: float) -> float | None:
        """Seconds of quiet still needed (0: quiet enough), None while requests are in flight."""
        if self.in_flight:
            return None
        return max(NETWORK_QUIET_S - (now - self.quiet_since), 0.0)


async def _dom_state(page: Page) -> tuple[float, bool]:
    try:
        quiet_ms, blank = await page.evaluate(DOM_STATE, DOM_QUIET_MS)
    except PlaywrightError:
        if page.is_closed():
            raise
        # The document was replaced (a navigation) or is being replaced: a change, so wait
        # for the new one to load and start counting again.
        await page.wait_for_load_state("load")
        return 0.0, False
    return float(quiet_ms), bool(blank)


async def _until_settled(page: Page, traffic: Traffic, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        if traffic.quiet_needed(loop.time()) is None:
            await traffic.idle.wait()
        quiet_ms, blank = await _dom_state(page)
        dom = max(DOM_QUIET_MS - quiet_ms, 0.0) / 1000
        network = traffic.quiet_needed(loop.time())
        if network == 0 and dom == 0 and not blank:
            return
        # Quiet but blank: an app may still render after a timer, look again soon.
        pause = BLANK_POLL_S if network == 0 and dom == 0 else max(network or 0.0, dom)
        await asyncio.sleep(min(max(pause, MIN_SLEEP_S), max(deadline - loop.time(), 0.0)))


async def settle(
    page: Page, traffic: Traffic, limit_s: float, crashed: asyncio.Event
) -> tuple[float, bool]:
    """Wait until the page is settled or `limit_s` passed: (seconds waited, whether it settled,
    showing something). Running out of time is not an error; a page that crashes meanwhile is
    (a PlaywrightError)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if limit_s <= 0:
        return 0.0, False
    waiting = asyncio.ensure_future(_until_settled(page, traffic, started + limit_s))
    crash = asyncio.ensure_future(crashed.wait())
    try:
        done, _ = await asyncio.wait({waiting, crash}, timeout=limit_s, return_when=FIRST_COMPLETED)
    finally:
        for task in (waiting, crash):
            task.cancel()
        await asyncio.gather(waiting, crash, return_exceptions=True)
    if crashed.is_set():
        raise PlaywrightError("Target crashed")
    if waiting in done:
        waiting.result()  # its error, if it had one
    return loop.time() - started, waiting in done


async def shows_nothing(page: Page) -> bool:
    """Whether the page has no text and nothing else to show (an app that never rendered)."""
    return bool(await page.evaluate(SHOWS_NOTHING))

"""What a `render` job does on its page, in order: load it, let it settle, wait, act, check that
it shows something, read it and take its screenshot. Every step runs under the job's Budget;
waits end early when the page crashes (worker/browser_memory.py says whether memory is why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from shared.job_errors import JobErrorCode
from shared.specs import Action, RenderInput, WaitFor
from worker.browser_budget import Budget
from worker.browser_memory import WatchedPage
from worker.browser_navigation import MainFrame, check_response, first_line
from worker.browser_settle import Traffic, settle, shows_nothing
from worker.engines.base import EngineContext
from worker.retry import JobError

VIEWPORT = {"width": 1280, "height": 800}
SETTLE_RESERVE_S = 2.0  # of the job's time, kept for reading the page after settling


@dataclass
class Rendered:
    """What the page gave: its DOM, the URL and status it ended on, a screenshot, timings."""

    html: str
    final_url: str
    status: int
    shot: tuple[bytes, bool] | None
    settle_ms: float


async def _navigate(page: Page, url: str, budget: Budget, main: MainFrame) -> int:
    try:
        response = await budget.run(
            "Loading the page", lambda ms: page.goto(url, wait_until="load", timeout=ms)
        )
    except PlaywrightError as exc:
        raise main.failed(exc) from exc
    return check_response(response, main.proxy)


async def _step(page: Page, budget: Budget, what: str, call: Callable[[float], Any]) -> None:
    """A wait or an action: past the deadline a retryable `timeout`; a bad selector and the
    like fail for good (`action_failed`), a page that died under it may be tried again."""
    try:
        await budget.run(what, call)
    except PlaywrightError as exc:
        if page.is_closed() or "crash" in str(exc).lower():
            raise JobError(
                JobErrorCode.BROWSER_ERROR, f"{what}: {first_line(exc)}", retryable=True
            ) from exc
        raise JobError(
            JobErrorCode.ACTION_FAILED, f"{what}: {first_line(exc)}", retryable=False
        ) from exc


async def _wait_for(page: Page, wait: WaitFor | None, budget: Budget, watched: WatchedPage) -> None:
    if wait is not None and wait.selector is not None:
        selector, what = wait.selector, f"Waiting for {wait.selector!r}"
        wait_for = page.wait_for_selector
        await _step(page, budget, what, lambda ms: wait_for(selector, state="attached", timeout=ms))
    elif wait is not None and wait.ms is not None:
        seconds = wait.ms / 1000
        await _step(page, budget, "The wait", lambda _ms: watched.sleep(seconds))
    elif wait is not None:
        idle = page.wait_for_load_state
        what = "Waiting for network idle"
        await _step(page, budget, what, lambda ms: idle("networkidle", timeout=ms))


async def _act(page: Page, action: Action, budget: Budget, watched: WatchedPage, what: str) -> None:
    sel, kind = action.selector or "", action.type

    async def step(ms: float) -> None:
        if kind == "click":
            await page.click(sel, timeout=ms)
        elif kind == "fill":
            await page.fill(sel, action.value or "", timeout=ms)
        elif kind == "press" and sel:
            await page.press(sel, action.key or "", timeout=ms)
        elif kind == "press":
            await page.keyboard.press(action.key or "")
        elif kind == "scroll" and sel:
            await page.locator(sel).first.scroll_into_view_if_needed(timeout=ms)
        elif kind == "scroll":
            await page.evaluate("y => window.scrollBy(0, y)", action.y or VIEWPORT["height"])
        else:
            await watched.sleep((action.ms or 0) / 1000)

    await _step(page, budget, what, step)


async def _content(page: Page, budget: Budget) -> str:
    try:
        return await budget.run("Reading the page", lambda _ms: page.content())
    except PlaywrightError:  # an action started a navigation: let it land, then read
        await budget.run("Loading the page", lambda ms: page.wait_for_load_state(timeout=ms))
        return await budget.run("Reading the page", lambda _ms: page.content())


async def _screenshot(page: Page, full_page: bool, budget: Budget, cap: int) -> tuple[bytes, bool]:
    png = await budget.run(
        "The screenshot", lambda ms: page.screenshot(full_page=full_page, type="png", timeout=ms)
    )
    if len(png) > cap and full_page:  # a very long page: the viewport is better than nothing
        png = await budget.run("The screenshot", lambda ms: page.screenshot(type="png", timeout=ms))
        full_page = False
    if len(png) > cap:
        raise JobError(
            JobErrorCode.ARTIFACT_TOO_LARGE, f"The screenshot is over {cap} bytes.", retryable=False
        )
    return png, full_page


async def _settle(
    page: Page, traffic: Traffic | None, spec: RenderInput, budget: Budget, watched: WatchedPage
) -> tuple[float, bool]:
    """Let the page settle (see worker/browser_settle.py): (the milliseconds it took, whether
    it settled showing something)."""
    if traffic is None:
        return 0.0, False
    limit_s = min(spec.settle_ms / 1000, budget.left() - SETTLE_RESERVE_S)
    seconds, settled = await settle(page, traffic, limit_s, watched.crashed)
    return seconds * 1000, settled


async def _check_shows_something(page: Page, budget: Budget, settled_ms: float) -> None:
    if await budget.run("Reading the page", lambda _ms: shows_nothing(page)):
        when = f"after settling for {settled_ms:.0f} ms" if settled_ms else "at load (no settling)"
        raise JobError(
            JobErrorCode.EMPTY_PAGE,
            f"The page shows nothing (no text, no image) {when}: an app that did not render, "
            "or a backend too slow for now.",
            retryable=True,
            details={"settle_ms": round(settled_ms)},
        )


async def render_page(
    ctx: EngineContext,
    spec: RenderInput,
    page: Page,
    url: str,
    budget: Budget,
    main: MainFrame,
    watched: WatchedPage,
) -> Rendered:
    """Load `url` in `page` and do what `spec` asks; the page as the job returns it."""
    traffic = Traffic(page) if spec.settle_ms else None  # before the load: requests in flight
    status = await _navigate(page, url, budget, main)
    await ctx.progress("loaded", status_code=status)
    settled_ms, shows_something = await _settle(page, traffic, spec, budget, watched)
    await _wait_for(page, spec.wait_for, budget, watched)
    for number, action in enumerate(spec.actions, start=1):
        await _act(page, action, budget, watched, f"Action {number} ({action.type})")
        await ctx.progress("action", done=number, total=len(spec.actions))
    html = await _content(page, budget)
    status = main.judge()
    if not (shows_something and not spec.actions):  # settling saw it; actions may change it
        await _check_shows_something(page, budget, settled_ms)
    final_url = page.url
    shot = None
    if spec.screenshot is not None:
        cap = ctx.settings.artifact_max_bytes
        shot = await _screenshot(page, spec.screenshot.full_page, budget, cap)
    return Rendered(html, final_url, status, shot, settled_ms)

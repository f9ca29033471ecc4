"""The `render` job: load a page in Chromium, wait, act, screenshot, then extract from the DOM.

Every page operation has a hard deadline: Playwright's own timeout set to the time the job has
left, and an asyncio timeout a little past it in case the driver does not answer. Every request
goes through the worker's egress proxy, the check that decides (see worker/browser_egress.py);
Chromium itself keeps web pages away from file:, chrome: and the like. A job that blocks
resource types or sends headers also gets a context route (blocked types are dropped, URLs the
policy refuses are aborted early, the job's headers go to the page's own host only). Without
one, requests are not intercepted at all: interception costs a driver round trip per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import BrowserContext, Page, Request, Response, Route
from playwright.async_api import Error as PlaywrightError
from yarl import URL

from shared.domains import domain_allowed
from shared.errors import EgressBlocked
from shared.repositories.artifact import insert_artifact
from shared.specs import Action, RenderInput, WaitFor
from worker.browser import Budget, RenderRuntime, current_runtime
from worker.browser_egress import MARKER_HEADER, EgressProxy, Refusal, resolve_checked
from worker.engines.base import EngineContext
from worker.extract import SchemaError, build_result, parse_off_loop
from worker.extract.schema import compile_schema
from worker.metrics import REFUSAL_CODES
from worker.retry import JobError, status_error

CLEANUP_RESERVE_S = 3.0
VIEWPORT = {"width": 1280, "height": 800}
# net::ERR_* prefixes of a failed navigation -> (code, retryable); others are connection errors.
NET_ERRORS = (
    (("ERR_NAME_NOT_RESOLVED", "ERR_NAME_RESOLUTION_FAILED"), "dns_not_found", False),
    (("ERR_CERT_", "ERR_SSL_", "ERR_BAD_SSL_"), "tls_error", False),
    (("ERR_BLOCKED_BY_CLIENT", "ERR_UNSAFE_PORT"), "blocked_destination", False),
    (("ERR_INVALID_URL",), "invalid_url", False),
    (("ERR_TOO_MANY_REDIRECTS",), "too_many_redirects", False),
    (("ERR_TIMED_OUT", "ERR_CONNECTION_TIMED_OUT"), "timeout", True),
)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def navigation_error(exc: PlaywrightError, proxy: EgressProxy, urls: list[str]) -> JobError:
    """The job error for a failed navigation (`urls`: the hops tried, newest last)."""
    message = _first_line(exc)
    if "ERR_TUNNEL_CONNECTION_FAILED" in message:
        refusal = next(filter(None, (proxy.refusal_for(u) for u in reversed(urls))), None)
        if refusal is not None:
            retryable = refusal.code == "connection_error"
            return JobError(refusal.code, refusal.message, retryable=retryable)
    for markers, code, retryable in NET_ERRORS:
        if any(marker in message for marker in markers):
            return JobError(code, message, retryable=retryable)
    if "net::ERR_" in message:
        return JobError("connection_error", message, retryable=True)
    if "Download is starting" in message:  # not a page: a file the browser would save
        return JobError("unsupported_content_type", message, retryable=False)
    return JobError("browser_error", message, retryable=True)


def _check_response(response: Response | None, proxy: EgressProxy) -> int:
    if response is None:  # same-document navigation: nothing to judge
        return 200
    code = proxy.marked_code(response.headers.get(MARKER_HEADER.lower()))
    if code is not None:  # the egress proxy answered, not the site
        message = f"The egress proxy refused {response.url}."
        raise JobError(code, message, retryable=code == "connection_error")
    status = response.status
    if status >= 400:
        raise status_error(status, response.headers.get("retry-after"))
    return status


class Refusals:
    """The page's requests the egress policy refused: in the context route (when the job has
    one), or by the egress proxy, seen as its marked answers and as failed tunnels to a host:port
    it refused."""

    def __init__(self, proxy: EgressProxy) -> None:
        self.proxy = proxy
        self.urls: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        context.on("response", self._answered)
        context.on("requestfailed", self._failed)

    def _answered(self, response: Response) -> None:
        code = self.proxy.marked_code(response.headers.get(MARKER_HEADER.lower()))
        if code in REFUSAL_CODES:
            self.urls.append(response.url)

    def _failed(self, request: Request) -> None:
        if "ERR_TUNNEL_CONNECTION_FAILED" in (request.failure or ""):
            refusal = self.proxy.refusal_for(request.url)
            if refusal is not None and refusal.code in REFUSAL_CODES:
                self.urls.append(request.url)


def _router(
    ctx: EngineContext,
    spec: RenderInput,
    headers: dict[str, str],
    main_host: str | None,
    refusals: Refusals,
) -> Callable[[Route], Awaitable[None]]:
    async def handle(route: Route) -> None:
        request = route.request
        try:
            if request.resource_type in spec.block_resources:
                await route.abort("blockedbyclient")
                return
            try:
                ctx.policy.check_url(request.url)
            except EgressBlocked:
                refusals.urls.append(request.url)
                await route.abort("blockedbyclient")
                return
            if headers and URL(request.url).host == main_host:  # never to third parties
                await route.continue_(headers={**await request.all_headers(), **headers})
            else:
                await route.continue_()
        except PlaywrightError:
            pass  # the context closed under the request

    return handle


async def _navigate(page: Page, url: str, budget: Budget, proxy: EgressProxy) -> int:
    hops = [url]

    def on_request(request: Request) -> None:
        with contextlib.suppress(PlaywrightError):
            if request.is_navigation_request() and request.frame == page.main_frame:
                hops.append(request.url)

    page.on("request", on_request)
    try:
        response = await budget.run(
            "Loading the page", lambda ms: page.goto(url, wait_until="load", timeout=ms)
        )
    except PlaywrightError as exc:
        raise navigation_error(exc, proxy, hops) from exc
    finally:
        page.remove_listener("request", on_request)
    return _check_response(response, proxy)


async def _step(page: Page, budget: Budget, what: str, call: Callable[[float], Any]) -> None:
    """A wait or an action: past the deadline a retryable `timeout`; a bad selector and the
    like fail for good (`action_failed`), a page that died under it may be tried again."""
    try:
        await budget.run(what, call)
    except PlaywrightError as exc:
        if page.is_closed():
            raise JobError("browser_error", f"{what}: {_first_line(exc)}", retryable=True) from exc
        raise JobError("action_failed", f"{what}: {_first_line(exc)}", retryable=False) from exc


async def _wait_for(page: Page, wait: WaitFor | None, budget: Budget) -> None:
    if wait is not None and wait.selector is not None:
        selector, what = wait.selector, f"Waiting for {wait.selector!r}"
        wait_for = page.wait_for_selector
        await _step(page, budget, what, lambda ms: wait_for(selector, state="attached", timeout=ms))
    elif wait is not None and wait.ms is not None:
        seconds = wait.ms / 1000
        await _step(page, budget, "The wait", lambda _ms: asyncio.sleep(seconds))
    elif wait is not None:
        idle = page.wait_for_load_state
        what = "Waiting for network idle"
        await _step(page, budget, what, lambda ms: idle("networkidle", timeout=ms))


async def _act(page: Page, action: Action, budget: Budget, what: str) -> None:
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
            await asyncio.sleep((action.ms or 0) / 1000)

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
            "artifact_too_large", f"The screenshot is over {cap} bytes.", retryable=False
        )
    return png, full_page


def _schema(spec: RenderInput) -> dict[str, Any] | None:
    schema: dict[str, Any] | None = spec.model_dump(mode="json", exclude_none=True).get("extract")
    try:
        compile_schema(schema or {})  # a bad selector fails now, before the browser is used
    except SchemaError as exc:
        raise JobError("invalid_extract", str(exc), retryable=False) from None
    return schema


async def _check_target(ctx: EngineContext, url: str) -> str:
    try:
        checked = ctx.policy.check_url(url)
        await resolve_checked(ctx.policy, checked)  # early, clear errors; the proxy decides
    except EgressBlocked as exc:
        raise JobError(exc.code, str(exc), retryable=False) from exc
    except Refusal as refusal:
        raise JobError(refusal.code, refusal.message, retryable=False) from refusal
    if not domain_allowed(checked, ctx.agent.allowed_domains, ctx.agent.blocked_domains):
        raise JobError(
            "domain_not_allowed", "The agent's domain rules forbid this host.", retryable=False
        )
    return checked


async def _render(
    ctx: EngineContext, runtime: RenderRuntime, spec: RenderInput, url: str, budget: Budget
) -> tuple[str, dict[str, Any], tuple[bytes, bool] | None, int]:
    proxy = runtime.pool.proxy
    refusals = Refusals(proxy)
    options: dict[str, Any] = {"viewport": VIEWPORT, "service_workers": "block"}
    if ctx.agent.user_agent:
        options["user_agent"] = ctx.agent.user_agent
    async with runtime.pool.context(accept_downloads=False, **options) as context:
        refusals.watch(context)
        headers = {k.lower(): v for k, v in {**(ctx.agent.headers or {}), **spec.headers}.items()}
        if spec.block_resources or headers:
            await context.route("**/*", _router(ctx, spec, headers, URL(url).host, refusals))
        page = await budget.run("Opening a page", lambda _ms: context.new_page())
        status = await _navigate(page, url, budget, proxy)
        await ctx.progress("loaded", status_code=status)
        await _wait_for(page, spec.wait_for, budget)
        for number, action in enumerate(spec.actions, start=1):
            await _act(page, action, budget, f"Action {number} ({action.type})")
            await ctx.progress("action", done=number, total=len(spec.actions))
        html = await _content(page, budget)
        final_url = page.url
        shot = None
        if spec.screenshot is not None:
            cap = ctx.settings.artifact_max_bytes
            shot = await _screenshot(page, spec.screenshot.full_page, budget, cap)
    if not final_url.startswith(("http://", "https://")):
        raise JobError("blocked_destination", f"The page ended on {final_url!r}.", retryable=False)
    if not domain_allowed(final_url, ctx.agent.allowed_domains, ctx.agent.blocked_domains):
        raise JobError("domain_not_allowed", "The page moved to a forbidden host.", retryable=False)
    meta = {"final_url": final_url, "status_code": status, "content_type": "text/html"}
    return html, meta, shot, len(refusals.urls)


async def run_render(ctx: EngineContext) -> dict[str, Any]:
    """Run a `render` job on a browser worker. Safe to repeat: it only reads pages (a retry
    stores a new screenshot artifact). Timeouts, resets, 408/425/429/5xx and a browser crash
    are retryable; DNS, TLS, other 4xx and policy refusals are not."""
    return await render_spec(ctx, RenderInput.model_validate(ctx.job.input))


async def render_spec(ctx: EngineContext, spec: RenderInput) -> dict[str, Any]:
    """Render `spec` (a render input, or a scrape input escalated to the browser)."""
    schema = _schema(spec)
    runtime = current_runtime()
    total = ctx.time_left(
        min(spec.timeout_s or ctx.agent.timeout_s or ctx.job.timeout_s, ctx.job.timeout_s)
    )
    budget = Budget(total - min(CLEANUP_RESERVE_S, total * 0.2))
    url = await _check_target(ctx, spec.url)
    started = time.monotonic()
    try:
        html, meta, shot, blocked = await _render(ctx, runtime, spec, url, budget)
    except PlaywrightError as exc:  # none of the above: the page or the driver failed
        raise JobError("browser_error", _first_line(exc), retryable=True) from exc
    cap = ctx.settings.result_max_bytes
    meta["bytes"] = len(html.encode())
    meta["timings_ms"] = {"render": round((time.monotonic() - started) * 1000, 1)}
    formats, url = list(spec.formats), meta["final_url"]
    result = await parse_off_loop(
        None,
        build_result,
        html[:cap],
        url=url,
        formats=formats,
        extract=schema,
        metadata=meta,
        markdown_links=spec.markdown_links,
    )
    result["blocked_requests"] = blocked
    if shot is not None:
        png, full_page = shot
        async with runtime.sessionmaker.begin() as session:
            artifact = await insert_artifact(
                session,
                owner_id=ctx.job.owner_id,
                job_id=ctx.job.id,
                kind="screenshot",
                content_type="image/png",
                data=png,
            )
        result["screenshot"] = {
            "artifact_id": str(artifact.id),
            "content_type": "image/png",
            "size": len(png),
            "full_page": full_page,
        }
    return result

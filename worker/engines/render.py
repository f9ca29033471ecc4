"""The `render` job: load a page in Chromium, let it settle, wait, act, screenshot, then extract
from the DOM (the page's steps are in render_page.py).

Every page operation has a hard deadline: Playwright's own timeout set to the time the job has
left, and an asyncio timeout a little past it in case the driver does not answer. Every request
goes through the worker's egress proxy, the check that decides (see worker/browser_egress.py);
Chromium itself keeps web pages away from file:, chrome: and the like, and the page the job
returns is judged as its first navigation is (worker/browser_navigation.py). A job that blocks
resource types or sends headers also gets a context route (blocked types are dropped, URLs the
policy refuses are aborted early, the job's headers go to the page's own host only). Without
one, requests are not intercepted at all: interception costs a driver round trip per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import BrowserContext, Route
from playwright.async_api import Error as PlaywrightError
from yarl import URL

from shared.domains import domain_allowed
from shared.errors import EgressBlocked
from shared.job_errors import JobErrorCode
from shared.repositories.artifact import insert_artifact
from shared.specs import RenderInput
from worker.browser import RenderRuntime
from worker.browser_budget import Budget
from worker.browser_egress import resolve_checked
from worker.browser_navigation import MainFrame, Refusals, first_line, navigation_error
from worker.browser_settle import prepare
from worker.engines.base import EngineContext
from worker.engines.outputs import finish_formats, parse_formats
from worker.engines.render_page import VIEWPORT, Rendered, render_page
from worker.extract.document import build_result
from worker.extract.pool import parse_off_loop
from worker.extract.schema import SchemaError, compile_schema
from worker.identity import apply_stealth, context_options, stealth_options
from worker.refusal import Refusal
from worker.retry import JobError

__all__ = ["navigation_error", "render_spec", "run_render"]

CLEANUP_RESERVE_S = 3.0


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


async def _storage(context: BrowserContext) -> dict[str, Any]:
    return dict(await context.storage_state())


def _schema(spec: RenderInput) -> dict[str, Any] | None:
    schema: dict[str, Any] | None = spec.model_dump(mode="json", exclude_none=True).get("extract")
    try:
        compile_schema(schema or {})  # a bad selector fails now, before the browser is used
    except SchemaError as exc:
        raise JobError(JobErrorCode.INVALID_EXTRACT, str(exc), retryable=False) from None
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
            JobErrorCode.DOMAIN_NOT_ALLOWED,
            "The agent's domain rules forbid this host.",
            retryable=False,
        )
    return checked


async def _render(
    ctx: EngineContext, runtime: RenderRuntime, spec: RenderInput, url: str, budget: Budget
) -> tuple[Rendered, int]:
    proxy = runtime.pool.proxy
    refusals = Refusals(proxy)
    options: dict[str, Any] = {"viewport": VIEWPORT, "service_workers": "block"}
    if ctx.agent.user_agent:
        options["user_agent"] = ctx.agent.user_agent
    place = spec.geolocation.model_dump() if spec.geolocation is not None else None
    options |= context_options(ctx.job, ctx.agent, place)
    if ctx.session is not None:
        options["storage_state"] = ctx.session.storage_state()
    stealthy: dict[str, Any] = {}

    def tailor(version: str, given: dict[str, Any]) -> dict[str, Any]:
        stealthy.update(stealth_options(ctx.job, ctx.agent, version, given))
        return stealthy

    stealth = ctx.agent.stealth
    async with runtime.pool.context(
        ctx.proxy, tailor if stealth else None, accept_downloads=False, **options
    ) as context:
        if stealth:
            await apply_stealth(context, stealthy)
        refusals.watch(context)
        headers = {k.lower(): v for k, v in {**(ctx.agent.headers or {}), **spec.headers}.items()}
        if spec.block_resources or headers:
            await context.route("**/*", _router(ctx, spec, headers, URL(url).host, refusals))
        if spec.settle_ms:
            await prepare(context)
        page = await budget.run("Opening a page", lambda _ms: context.new_page())
        main = MainFrame(page, proxy, url)
        with runtime.pool.watch(context, page) as watched:
            try:
                rendered = await render_page(ctx, spec, page, url, budget, main, watched)
            except (JobError, PlaywrightError) as exc:
                too_large = watched.verdict()
                if too_large is None:
                    raise
                raise too_large from exc
            if (too_large := watched.verdict()) is not None:  # e.g. one of its frames
                raise too_large
        if ctx.session is not None:  # cookies and local storage, for the session's next job
            state = await budget.run("Reading the session", lambda _ms: _storage(context))
            ctx.session.replace(state)
    final_url = rendered.final_url
    if not final_url.startswith(("http://", "https://")):
        raise JobError(
            JobErrorCode.BLOCKED_DESTINATION, f"The page ended on {final_url!r}.", retryable=False
        )
    if not domain_allowed(final_url, ctx.agent.allowed_domains, ctx.agent.blocked_domains):
        raise JobError(
            JobErrorCode.DOMAIN_NOT_ALLOWED, "The page moved to a forbidden host.", retryable=False
        )
    return rendered, len(refusals.urls)


async def run_render(ctx: EngineContext) -> dict[str, Any]:
    """Run a `render` job on a browser worker. Safe to repeat: it only reads pages (a retry
    stores a new screenshot artifact). Timeouts, resets, 408/425/429/5xx and a browser crash
    are retryable; DNS, TLS, other 4xx and policy refusals are not."""
    spec = RenderInput.model_validate(ctx.job.input)
    return await finish_formats(ctx, spec, await render_spec(ctx, spec))


def cut_utf8(html: str, cap: int) -> tuple[str, int]:
    """`html`'s longest prefix that is at most `cap` bytes of UTF-8 (never half a character),
    and the whole page's size in bytes. (A DOM string may hold lone surrogates: they count as
    the three bytes they would take, and are dropped if the cut keeps them.)"""
    data = html.encode("utf-8", "surrogatepass")
    if len(data) <= cap:
        return html, len(data)
    # `ignore` drops only the character the cut went through (and any lone surrogate).
    return data[:cap].decode("utf-8", "ignore"), len(data)


async def render_spec(ctx: EngineContext, spec: RenderInput) -> dict[str, Any]:
    """Render `spec` (a render input, or a scrape input escalated to the browser)."""
    schema = _schema(spec)
    runtime = ctx.render_runtime()
    total = ctx.time_left(
        min(spec.timeout_s or ctx.agent.timeout_s or ctx.job.timeout_s, ctx.job.timeout_s)
    )
    budget = Budget(total - min(CLEANUP_RESERVE_S, total * 0.2))
    url = await _check_target(ctx, spec.url)
    started = time.monotonic()
    try:
        rendered, blocked = await _render(ctx, runtime, spec, url, budget)
    except PlaywrightError as exc:  # none of the above: the page or the driver failed
        raise JobError(JobErrorCode.BROWSER_ERROR, first_line(exc), retryable=True) from exc
    url = rendered.final_url
    meta: dict[str, Any] = {"final_url": url, "status_code": rendered.status}
    html, size = cut_utf8(rendered.html, ctx.settings.result_max_bytes)
    ctx.meter.fetched(size)
    meta |= {"content_type": "text/html", "bytes": size}
    render_ms = (time.monotonic() - started) * 1000
    meta["timings_ms"] = {"render": round(render_ms, 1), "settle": round(rendered.settle_ms, 1)}
    result = await parse_off_loop(
        None,
        build_result,
        html,
        url=url,
        formats=parse_formats(spec),
        extract=schema,
        metadata=meta,
        markdown_links=spec.markdown_links,
    )
    if len(html) < len(rendered.html) and isinstance(result.get("metadata"), dict):
        result["metadata"]["truncated"] = True  # `bytes` is the whole page's size
    result["blocked_requests"] = blocked
    if rendered.shot is not None:
        result["screenshot"] = await _store_screenshot(ctx, runtime, *rendered.shot)
    return result


async def _store_screenshot(
    ctx: EngineContext, runtime: RenderRuntime, png: bytes, full_page: bool
) -> dict[str, Any]:
    async with runtime.sessionmaker.begin() as session:
        artifact = await insert_artifact(
            session,
            owner_id=ctx.job.owner_id,
            job_id=ctx.job.id,
            kind="screenshot",
            content_type="image/png",
            data=png,
        )
    return {
        "artifact_id": str(artifact.id),
        "content_type": "image/png",
        "size": len(png),
        "full_page": full_page,
    }

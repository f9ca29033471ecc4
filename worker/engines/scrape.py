"""The `scrape` job: fetch the page over HTTP first, and render it in Chromium when it needs it.

`render: "http"` only fetches (default queue); `"browser"` only renders; `"auto"` (the default)
runs on the browser queue, fetches first and escalates when the fetched page is an app shell
(an empty mount point such as `<div id="root"></div>` with scripts, or a `<noscript>` asking for
JavaScript) or has too little main text. The result's `render` says which mode ran and why.
A rendered page settles first (worker/browser_settle.py), so an app shell is read once filled;
one that stays empty fails `empty_page` instead of returning the shell.
"""

from __future__ import annotations

import re
from typing import Any

from shared.specs import ScrapeInput
from worker.engines.base import EngineContext
from worker.engines.fetch import fetch_spec
from worker.engines.outputs import finish_formats, parse_formats

MIN_TEXT_CHARS = 200
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_EMPTY_MOUNT = re.compile(
    rb"<div[^>]+id=[\"']?(?:root|app|__next|__nuxt|svelte|main-app)[\"']?[^>]*>\s*</div>", re.I
)
_NOSCRIPT_JS = re.compile(rb"<noscript[^>]*>[^<]{0,300}javascript", re.I)


def needs_browser(fetched: dict[str, Any]) -> str | None:
    """Why a fetched page should be rendered instead, or None if the fetch is good enough."""
    content_type = str(fetched.get("metadata", {}).get("content_type", ""))
    if not content_type.startswith(_HTML_TYPES):
        return None  # JSON, XML, text: a browser would not add anything
    raw = str(fetched.get("raw_html", "")).encode("utf-8", "replace")
    has_scripts = b"<script" in raw.lower()
    if has_scripts and (_EMPTY_MOUNT.search(raw) or _NOSCRIPT_JS.search(raw)):
        return "app_shell"
    if len(str(fetched.get("text", "")).strip()) < MIN_TEXT_CHARS:
        return "too_little_text"
    return None


def _only_requested(result: dict[str, Any], spec: ScrapeInput) -> dict[str, Any]:
    keep = set(parse_formats(spec)) | ({"extract"} if spec.extract else set())
    return {key: value for key, value in result.items() if key in keep}


async def run_scrape(ctx: EngineContext) -> dict[str, Any]:
    """Run a `scrape` job. Reads only, so safe to repeat; retries as fetch and render do."""
    spec = ScrapeInput.model_validate(ctx.job.input)
    return await finish_formats(ctx, spec, await _scrape(ctx, spec))


async def _scrape(ctx: EngineContext, spec: ScrapeInput) -> dict[str, Any]:
    from worker.engines.render import render_spec  # Playwright: browser workers only

    if spec.render == "browser":
        result = await render_spec(ctx, spec)
        result["render"] = {"mode": "browser", "reason": "requested"}
        return result
    probe = sorted({*parse_formats(spec), "text", "raw_html", "metadata"})
    fetched = await fetch_spec(ctx, spec.model_copy(update={"formats": probe}))
    reason = needs_browser(fetched) if spec.render == "auto" else None
    if reason is None:
        result = _only_requested(fetched, spec)
        why = "requested" if spec.render == "http" else "enough_content"
        result["render"] = {"mode": "http", "reason": why}
        return result
    await ctx.progress("escalating", reason=reason)
    result = await render_spec(ctx, spec)
    result["render"] = {"mode": "browser", "reason": reason}
    return result

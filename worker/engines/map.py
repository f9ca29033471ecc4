"""The `map` job: a site's URLs, fast, without page content.

Sources: the site's sitemaps (worker/crawl/sitemaps.py; not with `sitemap: "skip"`) and, unless
`sitemap: "only"`, the links of the start page and, to `max_depth`, of the pages it links to
(breadth first; each page is fetched for its links only, robots.txt obeyed as the agent says,
one request at a time). URLs are normalized and judged like a crawl's (scope, include/exclude);
at most `limit` are kept, those containing `search` first. Reads only: safe to repeat.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from shared.job_errors import JobErrorCode
from shared.specs import FetchInput, MapInput
from shared.urls import Scope, normalize_url
from worker.engines.base import EngineContext, check_destination
from worker.engines.crawl import agent_user_agent, site_sitemap
from worker.engines.fetch import fetch_spec
from worker.retry import Deferred, JobError
from worker.robots import RobotsCache, check_robots


class _Found:
    """The URLs found so far, in order, each once."""

    def __init__(self, spec: MapInput, start: str) -> None:
        self.spec = spec
        self.scope = Scope.of(start, spec.allow_subdomains, spec.include_paths, spec.exclude_paths)
        self.urls: dict[str, dict[str, Any]] = {}

    def add(self, raw: str, source: str, lastmod: str | None = None) -> str | None:
        """The normalized URL if it is in scope (kept if new and there is room), else None."""
        url = normalize_url(raw, ignore_query=self.spec.ignore_query)
        if url is None or self.scope.judge(url) is not None:
            return None
        if url in self.urls or len(self.urls) >= self.spec.limit * 2:  # room to rank `search`
            return url
        entry: dict[str, Any] = {"url": url, "source": source}
        if lastmod:
            entry["lastmod"] = lastmod
        self.urls[url] = entry
        return url

    def ranked(self) -> list[dict[str, Any]]:
        entries = list(self.urls.values())
        term = (self.spec.search or "").lower()
        if term:
            entries.sort(key=lambda entry: term not in entry["url"].lower())  # stable
        return entries[: self.spec.limit]


async def _links(ctx: EngineContext, url: str, robots: RobotsCache | None) -> list[str]:
    """The links of one page (nothing if robots.txt or the page refuses)."""
    try:
        if robots is not None:
            await check_robots(robots, url, agent_user_agent(ctx))
        page = await fetch_spec(ctx, FetchInput(url=url, formats=["links"]))
    except (JobError, Deferred):
        return []
    links = page.get("links") or {}
    return [
        str(link.get("url"))
        for group in ("internal", "external")
        for link in links.get(group) or []
    ]


async def _follow(ctx: EngineContext, found: _Found, start: str) -> None:
    spec = found.spec
    robots = (
        RobotsCache(ctx.redis, ctx.http, ctx.settings)
        if ctx.redis and ctx.agent.obey_robots
        else None
    )
    found.add(start, "links")
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    visiting = {start}
    while queue and len(found.urls) < spec.limit:
        url, depth = queue.popleft()
        for link in await _links(ctx, url, robots):
            known = found.add(link, "links")
            if known is not None and known not in visiting and depth + 1 <= spec.max_depth:
                visiting.add(known)
                queue.append((known, depth + 1))
        await ctx.progress("mapping", found=len(found.urls), to_visit=len(queue))


async def run_map(ctx: EngineContext) -> dict[str, Any]:
    """Run a `map` job (see the module docstring). Reads only, so safe to repeat."""
    spec = MapInput.model_validate(ctx.job.input)
    start = normalize_url(spec.url, ignore_query=spec.ignore_query)
    if start is None:
        raise JobError(
            JobErrorCode.INVALID_URL, "The start URL is not an http(s) URL.", retryable=False
        )
    check_destination(ctx, start)
    found = _Found(spec, start)
    if spec.sitemap != "skip":
        for entry in await site_sitemap(ctx, start):
            found.add(entry.url, "sitemap", entry.lastmod)
    if spec.sitemap != "only":
        await _follow(ctx, found, start)
    return {"urls": found.ranked()}

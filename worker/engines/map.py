"""The `map` job: a site's URLs, fast, without page content.

Sources: the site's sitemaps (worker/crawl/sitemaps.py; not with `sitemap: "skip"`) and, unless
`sitemap: "only"`, the links of the start page and, to `max_depth`, of the pages it links to
(breadth first; each page is fetched for its links only, robots.txt obeyed as the agent says,
up to 8 pages in flight, each through the shared per-host politeness slots like any job).
URLs are normalized and judged like a crawl's (scope, include/exclude); at most `limit` are
kept, those containing `search` first. With a `session`, pages and sitemaps are read with its
cookies (the runner's jar on `ctx.http`), robots.txt without them. Reads only: safe to repeat
(a session's cookies the site renewed are written back by the runner).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from shared.job_errors import JobErrorCode
from shared.specs import FetchInput, MapInput
from shared.urls import Scope, normalize_url
from worker.engines.base import EngineContext, check_destination
from worker.engines.crawl import agent_user_agent, site_sitemap
from worker.engines.fetch import fetch_spec
from worker.host_gate import HostGate
from worker.politeness import paced
from worker.retry import Deferred, JobError
from worker.robots import RobotsCache, check_robots

MAX_WIDTH = 8


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


ROBOTS_BUSY_RETRY_S = 0.5
ROBOTS_BUSY_TRIES = 20


async def _robots(robots: RobotsCache, url: str, user_agent: str) -> float | None:
    """robots.txt's Crawl-delay for `url`; JobError if it forbids the page. While another
    worker fetches the file (Deferred), wait for it: the page is not skipped for that."""
    for _ in range(ROBOTS_BUSY_TRIES):
        try:
            return await check_robots(robots, url, user_agent)
        except Deferred:
            await asyncio.sleep(ROBOTS_BUSY_RETRY_S)
    return await check_robots(robots, url, user_agent)


class _Pages:
    """Fetches pages for their links, each as a polite client of its host (the shared per-host
    slots of worker/host_gate.py: the agent's rate and concurrency, robots.txt's Crawl-delay)."""

    def __init__(self, ctx: EngineContext) -> None:
        assert ctx.redis is not None
        self.ctx = ctx
        self.gate = HostGate(ctx.redis)
        self.robots = (
            RobotsCache(ctx.redis, ctx.robots_http, ctx.settings) if ctx.agent.obey_robots else None
        )
        self.sent = 0

    async def links(self, url: str) -> list[str]:
        """The links of one page (nothing if robots.txt or the page refuses)."""
        ctx = self.ctx
        self.sent += 1
        token = f"{ctx.job.id}:map:{self.sent}"
        try:
            crawl_delay_s = None
            if self.robots is not None:
                crawl_delay_s = await _robots(self.robots, url, agent_user_agent(ctx))
            async with paced(self.gate, ctx.settings, ctx.agent, url, token, crawl_delay_s):
                page = await fetch_spec(ctx, FetchInput(url=url, formats=["links"]))
        except JobError:
            return []
        links = page.get("links") or {}
        return [
            str(link.get("url"))
            for group in ("internal", "external")
            for link in links.get(group) or []
        ]


def _width(ctx: EngineContext) -> int:
    """Pages fetched at once: the agent's host concurrency (the default's when it sets none),
    at most MAX_WIDTH. The host gate holds each to the host's limits anyway."""
    wanted = ctx.agent.host_concurrency or ctx.settings.host_concurrency or MAX_WIDTH
    return max(1, min(wanted, MAX_WIDTH))


async def _follow(ctx: EngineContext, found: _Found, start: str) -> None:
    """Breadth first from `start` to `max_depth`, several pages in flight; results are taken
    in the order the pages were found, so the URL list does not depend on timing."""
    spec = found.spec
    pages = _Pages(ctx)
    found.add(start, "links")
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    visiting = {start}
    in_flight: deque[tuple[int, asyncio.Task[list[str]]]] = deque()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < _width(ctx) and len(found.urls) < spec.limit:
                url, depth = queue.popleft()
                in_flight.append((depth, asyncio.create_task(pages.links(url))))
            if not in_flight:
                break
            depth, task = in_flight.popleft()
            for link in await task:
                known = found.add(link, "links")
                if known is not None and known not in visiting and depth + 1 <= spec.max_depth:
                    visiting.add(known)
                    queue.append((known, depth + 1))
            await ctx.progress("mapping", found=len(found.urls), to_visit=len(queue))
    finally:
        for _, task in in_flight:
            task.cancel()
        await asyncio.gather(*(task for _, task in in_flight), return_exceptions=True)


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

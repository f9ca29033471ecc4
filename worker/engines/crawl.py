"""The `crawl` job: seed the frontier, then park; the crawl's pages do the rest.

The attempt checks the start URL (the egress policy and the agent's domain rules: refused,
the crawl fails at once, `blocked_destination` or `domain_not_allowed`), reads the site's
sitemaps unless `sitemap: "skip"`, and writes the seeds into the frontier in one transaction:
the start page (depth 0) and, with `sitemap: "include"`, the sitemaps' URLs in scope at the
depth their path gives (`sitemap_depth`; deeper than `max_depth`: skipped `depth`); with
`"only"`, every sitemap URL at depth 0, and no links are followed. Seeding is idempotent
(URLs already in the frontier stay as they are), so a retried attempt, or a retried crawl,
seeds again safely; a retried crawl also resumes its frontier (pages cancelled or failed are
pending again). Then the engine raises `Parked`: the crawl stays `running` without holding a
worker slot, and the refill (worker/crawl/refill.py) turns its frontier into page jobs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from multidict import CIMultiDict

from shared.job_errors import JobErrorCode
from shared.models import PageState, SkipReason
from shared.repositories import frontier
from shared.repositories.frontier import NewPage
from shared.specs import CrawlInput
from shared.urls import Scope, normalize_url
from worker.crawl.sitemaps import SitemapEntry, SitemapReader, robots_sitemaps
from worker.engines.base import EngineContext, Parked, check_destination
from worker.http_client import DEFAULT_USER_AGENT
from worker.retry import JobError
from worker.robots import RobotsCache


def agent_user_agent(ctx: EngineContext) -> str:
    """The User-Agent the agent's requests carry."""
    configured = CIMultiDict(ctx.agent.headers or {}).get("User-Agent")
    return ctx.agent.user_agent or configured or DEFAULT_USER_AGENT


async def site_sitemap(ctx: EngineContext, url: str) -> list[SitemapEntry]:
    """The entries of the site's sitemaps (robots.txt's and /sitemap.xml)."""
    ua = agent_user_agent(ctx)
    named: list[str] = []
    if ctx.redis is not None:
        named = await robots_sitemaps(
            RobotsCache(ctx.redis, ctx.robots_http, ctx.settings), url, ua
        )
    reader = SitemapReader(ctx.http, ctx.settings, {"User-Agent": ua})
    return await reader.entries(url, named)


def sitemap_depth(start: str, url: str) -> int:
    """The depth a sitemap's URL gets: how many path segments it goes below the start URL's
    directory, at least 1 (as if the start page linked to it; a URL path is the only measure
    of distance a sitemap gives, as Firecrawl's `maxDepth` uses it)."""
    base = [s for s in urlsplit(start).path.split("/")[:-1] if s]
    path = [s for s in urlsplit(url).path.split("/") if s]
    shared = 0
    for a, b in zip(base, path, strict=False):
        if a != b:
            break
        shared += 1
    return max(1, len(path) - shared)


def seeds(spec: CrawlInput, start: str, entries: list[SitemapEntry]) -> list[NewPage]:
    """The start page, then the sitemaps' URLs (judged like links)."""
    pages = [NewPage(start, 0)]
    scope = Scope.of(start, spec.allow_subdomains, spec.include_paths, spec.exclude_paths)
    for entry in entries:
        url = normalize_url(entry.url, ignore_query=spec.ignore_query)
        if url is None or url == start:
            continue
        depth = 0 if spec.sitemap == "only" else sitemap_depth(start, url)
        reason = scope.judge(url)
        if reason is None and depth > spec.max_depth:
            reason = SkipReason.DEPTH
        state = PageState.SKIPPED if reason else PageState.PENDING
        pages.append(
            NewPage(url, depth, entry.sitemap, state, SkipReason(reason) if reason else None)
        )
    return pages


async def run_crawl(ctx: EngineContext) -> dict[str, object]:
    """Run a `crawl` job's seeding attempt (see the module docstring). Idempotent; retried
    like any job on transient failures (a sitemap that fails is skipped, not retried)."""
    spec = CrawlInput.model_validate(ctx.job.input)
    start = normalize_url(spec.url, ignore_query=spec.ignore_query)
    if start is None:
        raise JobError(
            JobErrorCode.INVALID_URL, "The start URL is not an http(s) URL.", retryable=False
        )
    check_destination(ctx, start)  # refused: the crawl fails now, before any request
    if ctx.frontier is None:
        raise JobError(
            JobErrorCode.KIND_NOT_SUPPORTED, "No frontier in this worker.", retryable=False
        )
    entries = await site_sitemap(ctx, start) if spec.sitemap != "skip" else []
    await ctx.progress("seeding", sitemap_urls=len(entries))
    async with ctx.frontier.begin() as session:
        await frontier.add_crawl(session, ctx.frontier.ignoring, ctx.job.id)
        await frontier.resume(session, ctx.job.id)
        await frontier.add_pages(
            session, ctx.frontier.ignoring, ctx.job.id, seeds(spec, start, entries)
        )
    async with ctx.frontier.read() as session:
        counts = await frontier.count_pages(session, ctx.job.id)
    raise Parked(counts)

"""A crawl's page ended: record it in the frontier once, and add the links it found.

One transaction: the conditional update of the page's frontier row (`queued` to its end
state) comes first, so of two workers settling one page (the one that ran it and a
reconciler repairing a crash) exactly one goes on; in the same transaction its final URL
(after redirects) is claimed as a key of its own and its links are inserted, each URL once per
crawl. Then the crawl is refilled.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Job, JobStatus, PageState, SkipReason
from shared.repositories import frontier
from shared.repositories.frontier import InsertIgnoring, NewPage, PageRow
from shared.specs import CrawlInput
from shared.urls import Scope, normalize_url
from worker.crawl.refill import refill
from worker.state import WorkerState

MAX_LINKS_PER_PAGE = 10_000
# A page job that failed with one of these was not crawled for a reason the frontier names.
SKIPPED_CODES = {
    "robots_disallowed": SkipReason.ROBOTS,
    "blocked_destination": SkipReason.BLOCKED,
    "domain_not_allowed": SkipReason.BLOCKED,
}


def page_end(status: str, error: dict[str, Any] | None) -> tuple[PageState, SkipReason | None]:
    """The frontier state of a page whose job ended in `status`."""
    if status == JobStatus.SUCCEEDED:
        return PageState.SUCCEEDED, None
    reason = SKIPPED_CODES.get(str((error or {}).get("code")))
    return (PageState.SKIPPED, reason) if reason else (PageState.FAILED, None)


def discovered(
    result: dict[str, Any], page: PageRow, spec: CrawlInput, scope: Scope
) -> list[NewPage]:
    """The URLs a crawled page links to, normalized, each judged once."""
    links = result.get("links") or {}
    found: dict[str, NewPage] = {}
    depth = page.depth + 1
    for group in ("internal", "external"):
        for link in (links.get(group) or [])[:MAX_LINKS_PER_PAGE]:
            url = normalize_url(str(link.get("url", "")), ignore_query=spec.ignore_query)
            if url is None or url in found:
                continue
            reason = scope.judge(url)
            if reason is None and (depth > spec.max_depth or spec.sitemap == "only"):
                reason = SkipReason.DEPTH
            state = PageState.SKIPPED if reason else PageState.PENDING
            found[url] = NewPage(
                url, depth, page.url, state, SkipReason(reason) if reason else None
            )
    return list(found.values())


async def _claim_final_url(
    session: AsyncSession,
    ignoring: InsertIgnoring,
    crawl_id: uuid.UUID,
    page: PageRow,
    final_url: str | None,
) -> bool:
    """A redirected page claims its final URL. False if another page already has it (this
    one is then the duplicate, and its links are that page's to add)."""
    if final_url is None or frontier.url_key(final_url) == frontier.url_key(page.url):
        return True
    known = await frontier.find_page(session, crawl_id, final_url)
    if known is not None and known.job_id == page.job_id:
        return True  # claimed when the redirect was followed (worker/crawl/redirects.py)
    alias = NewPage(final_url, page.depth, page.url, PageState.SKIPPED, SkipReason.DUPLICATE,
                    page.job_id)  # fmt: skip
    if known is None:
        await frontier.add_pages(session, ignoring, crawl_id, [alias])
        return True
    if known.state in (PageState.PENDING, PageState.SKIPPED):
        state, reason = PageState.SKIPPED, SkipReason.DUPLICATE
        await frontier.set_page(session, known.id, state, reason, page.job_id)
        return True
    await frontier.set_page(session, page.id, PageState.SKIPPED, SkipReason.DUPLICATE, page.job_id)
    return False


async def _settle_in(
    session: AsyncSession,
    ignoring: InsertIgnoring,
    crawl_id: uuid.UUID,
    job_id: uuid.UUID,
    status: str,
    error: dict[str, Any] | None,
) -> uuid.UUID | None:
    await frontier.lock_crawl(session, crawl_id)  # first: one crawl's writes, one at a time
    state, reason = page_end(status, error)
    settled = await frontier.settle_page(session, job_id, state, reason)  # the exactly-once gate
    if settled is None or state != PageState.SUCCEEDED:
        return settled[0] if settled else None
    crawl_id, page = settled
    crawl_input = await session.scalar(select(Job.input).where(Job.id == crawl_id))
    result = await session.scalar(select(Job.result).where(Job.id == job_id)) or {}
    if crawl_input is None:
        return None
    spec = CrawlInput.model_validate(crawl_input)
    final = normalize_url(
        str((result.get("metadata") or {}).get("final_url") or ""), ignore_query=spec.ignore_query
    )
    if await _claim_final_url(session, ignoring, crawl_id, page, final):
        scope = Scope.of(spec.url, spec.allow_subdomains, spec.include_paths, spec.exclude_paths)
        new = discovered(result, page, spec, scope)
        await frontier.add_pages(session, ignoring, crawl_id, new)
    return crawl_id


async def settle_page(
    state: WorkerState,
    crawl_id: uuid.UUID,
    job_id: uuid.UUID,
    status: str,
    error: dict[str, Any] | None,
) -> None:
    """Record a crawl page's end (`status`, `error`: its job's, committed) once and add its
    links, then refill its crawl. Idempotent: a page already recorded is left alone."""
    async with state.frontier.begin() as session:
        settled = await _settle_in(
            session, state.frontier.ignoring, crawl_id, job_id, status, error
        )
    if settled is not None:
        await refill(state, crawl_id)


async def repair(state: WorkerState, crawl_id: uuid.UUID, batch: int) -> int:
    """Settle the crawl's pages whose job ended unrecorded (their worker died after writing
    the outcome), then refill it; returns how many were settled."""
    async with state.frontier.read() as session:
        ended = await frontier.ended_unsettled(session, crawl_id, batch)
    for job_id, status, error in ended:
        async with state.frontier.begin() as session:
            await _settle_in(session, state.frontier.ignoring, crawl_id, job_id, status, error)
    await refill(state, crawl_id)
    return len(ended)

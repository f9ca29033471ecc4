"""A crawl's page that redirects claims the URL it lands on, before requesting it.

Each hop of a page job's redirects is claimed in the crawl's frontier (one short transaction):
a URL nobody has is added as a `duplicate` of this page (the crawl will not fetch it again), a
pending one becomes that duplicate, and one another page job has (queued, crawled or claimed
by its own redirect) stops this page: it is the duplicate, and that URL is not fetched twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from shared.logging import describe, get_logger
from shared.models import Job, PageState, SkipReason
from shared.repositories import frontier
from shared.repositories.frontier import NewPage
from shared.repositories.frontier_store import FrontierStore
from shared.specs import CrawlInput
from shared.urls import normalize_url

RedirectClaim = Callable[[str], Awaitable[bool]]
log = get_logger(__name__)


async def claim_hop(
    store: FrontierStore, page_job: Job, crawl_input: CrawlInput, hop_url: str
) -> bool:
    """Whether this page may follow its redirect to `hop_url` (see the module docstring)."""
    url = normalize_url(hop_url, ignore_query=crawl_input.ignore_query)
    own = normalize_url(str(page_job.input.get("url", "")), ignore_query=crawl_input.ignore_query)
    if url is None or url == own or page_job.parent_id is None:
        return True
    crawl_id = page_job.parent_id
    async with store.begin() as session:
        await frontier.lock_crawl(session, crawl_id)  # first: the write that serializes
        known = await frontier.find_page(session, crawl_id, url)
        if known is None:
            mine = await frontier.find_page(session, crawl_id, own) if own else None
            depth = mine.depth if mine else 0
            alias = NewPage(url, depth, own, PageState.SKIPPED, SkipReason.DUPLICATE, page_job.id)
            await frontier.add_pages(session, store.ignoring, crawl_id, [alias])
            return True
        if known.job_id == page_job.id:
            return True
        if known.state in (PageState.PENDING, PageState.SKIPPED) and known.job_id is None:
            state, reason = PageState.SKIPPED, SkipReason.DUPLICATE
            await frontier.set_page(session, known.id, state, reason, page_job.id)
            return True
        return False


async def crawl_input_of(store: FrontierStore, crawl_id: uuid.UUID) -> CrawlInput | None:
    """The input of the crawl a page belongs to."""
    async with store.read() as session:
        raw = await session.scalar(select(Job.input).where(Job.id == crawl_id))
    return None if raw is None else CrawlInput.model_validate(raw)


def redirect_claim(store: FrontierStore, page_job: Job) -> RedirectClaim | None:
    """The claim a crawl page's fetch makes before following a redirect (None for a job that
    is no crawl's page)."""
    if page_job.parent_id is None:
        return None
    crawl_id = page_job.parent_id
    cached: list[CrawlInput] = []

    async def claim(hop_url: str) -> bool:
        try:
            if not cached:
                found = await crawl_input_of(store, crawl_id)
                if found is None:
                    return True
                cached.append(found)
            return await claim_hop(store, page_job, cached[0], hop_url)
        except SQLAlchemyError as exc:
            # Follow it: at worst the page is fetched twice, never lost.
            log.warning("crawl.redirect_claim_failed", error=describe(exc))
            return True

    return claim

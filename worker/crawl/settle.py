"""A crawl's page ended: record it in the frontier once, and add the links it found.

First, with no write open, the plan: the page's result and the crawl's input are read, its
final URL and links normalized and judged (scope, depth, and robots.txt from the shared cache
when the caller knows the agent: such a link is skipped without a job). Then one transaction,
whose first write takes the crawl's row: the conditional update of the page's frontier row
(`queued` to its end state), so of two workers settling one page (the one that ran it and a
reconciler repairing a crash) exactly one goes on; its final URL (after redirects) is claimed as
a key of its own; its links are inserted, each URL once per crawl; and the crawl is refilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Job, JobStatus, PageState, SkipReason
from shared.repositories import frontier
from shared.repositories.frontier import InsertIgnoring, NewPage, PageRow
from shared.specs import CrawlInput
from shared.urls import Scope, normalize_url
from worker.crawl.refill import Refilled, announce, refill, refill_in
from worker.state import WorkerState

MAX_LINKS_PER_PAGE = 10_000
# A page job that failed with one of these was not crawled for a reason the frontier names.
SKIPPED_CODES = {
    "robots_disallowed": SkipReason.ROBOTS,
    "blocked_destination": SkipReason.BLOCKED,
    "domain_not_allowed": SkipReason.BLOCKED,
}
RobotsJudge = Callable[[str], Awaitable[bool]]
"""Whether robots.txt (as cached) disallows a URL for the crawl's agent."""


def page_end(status: str, error: dict[str, Any] | None) -> tuple[PageState, SkipReason | None]:
    """The frontier state of a page whose job ended in `status`."""
    if status == JobStatus.SUCCEEDED:
        return PageState.SUCCEEDED, None
    reason = SKIPPED_CODES.get(str((error or {}).get("code")))
    return (PageState.SKIPPED, reason) if reason else (PageState.FAILED, None)


@dataclass
class Plan:
    """What a succeeded page adds: its final URL and the links it found (depth and found_on
    are filled in once the page's row is known)."""

    final_url: str | None = None
    links: list[tuple[str, SkipReason | None]] = field(default_factory=list)
    max_depth: int = 0


def judge_links(result: dict[str, Any], spec: CrawlInput) -> list[tuple[str, SkipReason | None]]:
    """The URLs a page links to, normalized, each once, with why each is not to be crawled."""
    links = result.get("links") or {}
    scope = Scope.of(spec.url, spec.allow_subdomains, spec.include_paths, spec.exclude_paths)
    found: dict[str, SkipReason | None] = {}
    for group in ("internal", "external"):
        for link in (links.get(group) or [])[:MAX_LINKS_PER_PAGE]:
            url = normalize_url(str(link.get("url", "")), ignore_query=spec.ignore_query)
            if url is not None and url not in found:
                reason = scope.judge(url)
                found[url] = SkipReason(reason) if reason else None
    return list(found.items())


async def plan_page(
    state: WorkerState, crawl_id: uuid.UUID, job_id: uuid.UUID, robots: RobotsJudge | None
) -> Plan | None:
    """Read and judge what a succeeded page found (no write open); None if nothing to add."""
    async with state.frontier.read() as session:
        crawl_input = await session.scalar(select(Job.input).where(Job.id == crawl_id))
        result = await session.scalar(select(Job.result).where(Job.id == job_id))
    if crawl_input is None or not result:
        return None
    spec = CrawlInput.model_validate(crawl_input)
    final = str((result.get("metadata") or {}).get("final_url") or "")
    links = [] if spec.sitemap == "only" else judge_links(result, spec)
    if robots is not None:
        links = [(u, SkipReason.ROBOTS if r is None and await robots(u) else r) for u, r in links]
    return Plan(normalize_url(final, ignore_query=spec.ignore_query), links, spec.max_depth)


def new_pages(plan: Plan, page: PageRow) -> list[NewPage]:
    """The planned links as frontier rows of the page that found them."""
    depth, max_depth = page.depth + 1, plan.max_depth
    pages = []
    for url, reason in plan.links:
        why = reason if reason or depth <= max_depth else SkipReason.DEPTH
        state = PageState.SKIPPED if why else PageState.PENDING
        pages.append(NewPage(url, depth, page.url, state, why))
    return pages


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


async def settle_in(
    session: AsyncSession,
    ignoring: InsertIgnoring,
    crawl_id: uuid.UUID,
    job_id: uuid.UUID,
    end: tuple[str, dict[str, Any] | None],
    plan: Plan | None,
) -> bool:
    """Record the page's end (`end`: its job's status and error) once and add what `plan`
    found; False if it was recorded already."""
    await frontier.lock_crawl(session, crawl_id)  # first: one crawl's writes, one at a time
    state, reason = page_end(*end)
    settled = await frontier.settle_page(session, job_id, state, reason)  # the exactly-once gate
    if settled is None:
        return False
    if state != PageState.SUCCEEDED or plan is None:
        return True
    _, page = settled
    if await _claim_final_url(session, ignoring, crawl_id, page, plan.final_url):
        await frontier.add_pages(session, ignoring, crawl_id, new_pages(plan, page))
    return True


@dataclass
class _Ended:
    job_id: uuid.UUID
    end: tuple[str, dict[str, Any] | None]
    plan: Plan | None
    done: asyncio.Future[None]


@dataclass
class SettleQueue:
    """The pages of one crawl that ended in this process and wait to be settled: whoever
    holds the lock settles all that wait, in one transaction (a group commit: the crawl's row
    lock is taken once for many pages, and a process never holds more than one database
    connection waiting for it)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: list[_Ended] = field(default_factory=list)


async def _settle_waiting(state: WorkerState, crawl_id: uuid.UUID, queue: SettleQueue) -> None:
    batch, queue.waiting = queue.waiting, []
    if not batch:
        return
    done = Refilled()
    try:
        async with state.frontier.begin() as session:  # one transaction: SQLite has one writer
            settled = False
            for item in batch:
                ignoring = state.frontier.ignoring
                settled |= await settle_in(
                    session, ignoring, crawl_id, item.job_id, item.end, item.plan
                )
            if settled:
                done = await refill_in(state, session, crawl_id)
    except BaseException as exc:
        failure = exc if isinstance(exc, Exception) else RuntimeError("settling was interrupted")
        for item in batch:
            if not item.done.done():
                item.done.set_exception(failure)
        raise
    for item in batch:
        item.done.set_result(None)
    await announce(state, crawl_id, done)


async def settle_page(
    state: WorkerState,
    crawl_id: uuid.UUID,
    job_id: uuid.UUID,
    end: tuple[str, dict[str, Any] | None],
    robots: RobotsJudge | None = None,
) -> None:
    """Record a crawl page's end (`end`: its job's status and error, committed) once, add its
    links and refill its crawl, in one transaction (shared with the crawl's other pages that
    ended meanwhile in this process). Idempotent: a page already recorded is left alone."""
    succeeded = end[0] == JobStatus.SUCCEEDED
    plan = await plan_page(state, crawl_id, job_id, robots) if succeeded else None
    queue = state.settle_queues.setdefault(crawl_id, SettleQueue())
    item = _Ended(job_id, end, plan, asyncio.get_running_loop().create_future())
    queue.waiting.append(item)
    try:
        async with queue.lock:
            if not item.done.done():
                with contextlib.suppress(Exception):  # each waiter raises its own below
                    await _settle_waiting(state, crawl_id, queue)
    finally:
        if not queue.waiting and not queue.lock.locked():
            state.settle_queues.pop(crawl_id, None)
    await item.done


async def repair(state: WorkerState, crawl_id: uuid.UUID, batch: int) -> int:
    """Settle the crawl's pages whose job ended unrecorded (their worker died after writing
    the outcome), then refill it; returns how many were settled."""
    async with state.frontier.read() as session:
        ended = await frontier.ended_unsettled(session, crawl_id, batch)
    for job_id, status, error in ended:
        succeeded = status == JobStatus.SUCCEEDED
        plan = await plan_page(state, crawl_id, job_id, None) if succeeded else None
        async with state.frontier.begin() as session:
            ignoring = state.frontier.ignoring
            await settle_in(session, ignoring, crawl_id, job_id, (status, error), plan)
    await refill(state, crawl_id)
    return len(ended)

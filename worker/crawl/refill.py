"""A crawl's refill: pending URLs become page jobs while the crawl has room, and the crawl
ends once nothing is pending, queued or running.

A refill is one short transaction that first takes the crawl's `crawl` row (refills of one
crawl run one at a time, in any worker), then counts the pages in flight, turns the next
pending URLs (breadth first) into ordinary `fetch` or `scrape` jobs with `parent_id` (so
politeness, robots.txt, egress, retries and events apply to them unchanged) and marks them
`queued`, all or none. The jobs are enqueued after the commit; a lost enqueue is repaired by
the reconciler like any other. Refills run when a crawl parks, when one of its pages ends, and
on every reconciler pass, so a dead worker never leaves a crawl stuck.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import AppError
from shared.events import JobEvent
from shared.logging import get_logger
from shared.models import Agent, CrawlPage, Job, JobStatus, PageState, SkipReason, utcnow
from shared.repositories import frontier
from shared.repositories.job import NewJob, insert_jobs
from shared.repositories.webhooks import add_deliveries, webhook_urls
from shared.services.job_rows import job_row
from shared.specs import CrawlInput, FetchJobSpec, ScrapeJobSpec
from worker.state import WorkerState

log = get_logger(__name__)

# Pages that always come back, whatever the user asked for: their links feed the frontier and
# their final URL (after redirects) is claimed as a key of its own.
FRONTIER_FORMATS = ("links", "metadata")
MAX_ROUNDS = 5  # refill rounds per transaction when pending URLs turn out to be blocked


@dataclass
class Refilled:
    """What one refill did: jobs to enqueue, and the crawl if it ended."""

    jobs: list[NewJob] = field(default_factory=list)
    ended: Job | None = None


def page_spec_template(crawl: Job, spec: CrawlInput) -> FetchJobSpec | ScrapeJobSpec:
    """The job spec of the crawl's pages, with the start URL standing in for each page's."""
    page = spec.page
    kind = page.page_kind()
    fields = page.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    fields.pop("render", None)
    if kind == "scrape":
        fields["render"] = page.render or "auto"
    asked = page.model_dump(mode="json", by_alias=True)["formats"]  # names and `json` objects
    formats = [*asked, *(name for name in FRONTIER_FORMATS if name not in asked)]
    if spec.session is not None:  # every page keeps the crawl's session
        fields["session"] = spec.session
    body: dict[str, Any] = {
        "kind": kind,
        "input": {**fields, "url": spec.url, "formats": formats},
        "agent_id": crawl.agent_id,
        "webhook_url": crawl.webhook_url if spec.page_webhooks else None,
    }
    if kind == "scrape":
        return ScrapeJobSpec.model_validate(body)
    return FetchJobSpec.model_validate(body)


def _page_rows(
    state: WorkerState, crawl: Job, agent: Agent, pages: list[frontier.PageRow]
) -> tuple[list[tuple[frontier.PageRow, dict[str, Any]]], list[int]]:
    """Job rows for pending pages; the ids of those the agent's rules or the egress policy
    refuse (skipped `blocked`)."""
    spec = CrawlInput.model_validate(crawl.input)
    template = page_spec_template(crawl, spec)
    rows: list[tuple[frontier.PageRow, dict[str, Any]]] = []
    blocked: list[int] = []
    for page in pages:
        page_spec = template.model_copy(
            update={"input": template.input.model_copy(update={"url": page.url})}
        )
        try:
            row = job_row(state.settings, state.policy, crawl.owner_id, page_spec, agent)
        except AppError:
            blocked.append(page.id)
            continue
        row["parent_id"] = crawl.id
        rows.append((page, row))
    return rows, blocked


async def _load(session: AsyncSession, crawl_id: uuid.UUID) -> tuple[Job, Agent] | None:
    crawl = await session.scalar(select(Job).where(Job.id == crawl_id))
    if crawl is None or crawl.status != JobStatus.RUNNING or crawl.worker_id is not None:
        return None  # ended, cancelled, or still seeding in a worker
    agent = await session.scalar(select(Agent).where(Agent.id == crawl.agent_id))
    return None if agent is None else (crawl, agent)


async def _queue_pages(
    state: WorkerState,
    session: AsyncSession,
    crawl: Job,
    agent: Agent,
    room: tuple[int, int | None],
) -> list[NewJob]:
    """Up to `room` (how many, the shallowest depth in flight) pending pages become jobs;
    blocked ones are skipped on the way."""
    jobs: list[NewJob] = []
    count, flying_depth = room
    for _ in range(MAX_ROUNDS):
        wanted = count - len(jobs)
        pages = (
            await frontier.next_pending(session, crawl.id, wanted, flying_depth)
            if wanted > 0
            else []
        )
        if not pages:
            break
        rows, blocked = _page_rows(state, crawl, agent, pages)
        await frontier.mark_skipped(session, blocked, SkipReason.BLOCKED)
        if rows:
            new = await insert_jobs(session, [row for _, row in rows])
            await frontier.mark_queued(
                session, [(page.id, job.id) for (page, _), job in zip(rows, new, strict=True)]
            )
            jobs += new
            shallowest = min(page.depth for page, _ in rows)
            flying_depth = shallowest if flying_depth is None else min(flying_depth, shallowest)
    return jobs


async def refill_in(state: WorkerState, session: AsyncSession, crawl_id: uuid.UUID) -> Refilled:
    """The refill, in the caller's transaction (which may hold the crawl's row already)."""
    taken = await frontier.lock_crawl(session, crawl_id)  # first: the write that serializes
    loaded = await _load(session, crawl_id) if taken is not None else None
    if loaded is None or taken is None:
        return Refilled()
    crawl, agent = loaded
    spec = CrawlInput.model_validate(crawl.input)
    flying, flying_depth = await frontier.flight(session, crawl_id)
    room = min(state.settings.crawl_max_in_flight - flying, spec.limit - taken)
    jobs = (
        await _queue_pages(state, session, crawl, agent, (room, flying_depth)) if room > 0 else []
    )
    await frontier.add_taken(session, crawl_id, len(jobs))
    if taken + len(jobs) >= spec.limit:
        await frontier.skip_all_pending(session, crawl_id, SkipReason.LIMIT)
    if jobs or flying or await frontier.has_pending(session, crawl_id):
        return Refilled(jobs=jobs)
    return Refilled(ended=await _finish(session, crawl))


async def _finish(session: AsyncSession, crawl: Job) -> Job | None:
    """The frontier is settled: the crawl succeeded, or failed if its start page did."""
    result = await frontier.count_pages(session, crawl.id)
    spec = CrawlInput.model_validate(crawl.input)
    error = await _start_error(session, crawl.id, spec.url)
    status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
    row = (
        await session.execute(
            update(Job)
            .where(Job.id == crawl.id, Job.status == JobStatus.RUNNING, Job.worker_id.is_(None))
            .values(status=status, result=result, error=error, finished_at=utcnow())
            .returning(*webhook_urls())
        )
    ).first()
    if row is None:
        return None
    await add_deliveries(session, crawl.id, status, row[0], row[1])
    crawl.status, crawl.result, crawl.error = status, result, error
    return crawl


async def _start_error(
    session: AsyncSession, crawl_id: uuid.UUID, start_url: str
) -> dict[str, Any] | None:
    """The start page's error if it was not crawled (refused or unreachable), else None."""
    start = await session.execute(
        select(CrawlPage.state, CrawlPage.skipped_because, Job.error)
        .outerjoin(Job, Job.id == CrawlPage.job_id)
        .where(CrawlPage.crawl_id == crawl_id, CrawlPage.depth == 0, CrawlPage.found_on.is_(None))
        .order_by(CrawlPage.id)
        .limit(1)
    )
    found = start.first()
    if found is None or found[0] == PageState.SUCCEEDED:
        return None
    if found[0] == PageState.SKIPPED and found[1] == SkipReason.DUPLICATE:
        return None  # it redirected to a page the crawl has (and crawled)
    error = dict(found[2] or {})
    return {
        "code": error.get("code") or f"start_page_{found[1] or found[0]}",
        "message": f"The start page was not crawled: {error.get('message') or found[1]}",
        "retryable": False,
        "details": {"url": start_url, "skipped_because": found[1]},
    }


async def refill(state: WorkerState, crawl_id: uuid.UUID) -> None:
    """Refill the crawl (or end it), then enqueue and announce what the commit holds."""
    async with state.frontier.begin() as session:
        done = await refill_in(state, session, crawl_id)
    await announce(state, crawl_id, done)


async def announce(state: WorkerState, crawl_id: uuid.UUID, done: Refilled) -> None:
    """After the refill's commit: enqueue its jobs, announce the crawl's end."""
    if done.jobs:
        await state.job_queue.enqueue(done.jobs, "crawl")
    if done.ended is not None:
        ended = done.ended
        await state.events.publish([JobEvent.of(ended, str(ended.status), ended.status)])
        log.info("crawl.ended", crawl_id=str(crawl_id), status=ended.status)

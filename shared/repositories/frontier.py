"""A crawl's frontier as rows: one per crawl and normalized URL (`crawl_page`), and the crawl's
header (`crawl`: pages taken, and the row whose update serializes the crawl's refills).

Every function runs in the caller's transaction (repositories never commit). The insert that
ignores URLs already known is the dialect's own (`Insert`, chosen once by the frontier store,
shared/repositories/frontier_store.py); everything else is portable SQL. A write comes first in
each writing transaction, so SQLite takes its write lock before reading (no stale snapshot) and
PostgreSQL locks the row the others wait on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from shared.errors import InvalidCursor
from shared.models import Crawl, CrawlPage, Job, JobStatus, PageState, SkipReason, utcnow

InsertIgnoring = Callable[[Table], Insert]
"""An INSERT into a table that skips rows whose unique key is already there."""

PAGE = cast(Table, CrawlPage.__table__)
CRAWL = cast(Table, Crawl.__table__)
INSERT_CHUNK = 500
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def url_key(url: str) -> str:
    """The unique key of a normalized URL within its crawl (URLs may be longer than an index
    entry may be)."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class NewPage:
    """A URL to add to a frontier (already normalized)."""

    url: str
    depth: int
    found_on: str | None = None
    state: PageState = PageState.PENDING
    skipped_because: SkipReason | None = None
    job_id: uuid.UUID | None = None


@dataclass(frozen=True)
class PageRow:
    """A frontier row as the crawl's refill and settle read it."""

    id: int
    url: str
    depth: int
    state: str
    job_id: uuid.UUID | None


async def add_crawl(session: AsyncSession, ignoring: InsertIgnoring, crawl_id: uuid.UUID) -> None:
    """The crawl's header row, if it is not there yet."""
    await session.execute(ignoring(CRAWL).values(job_id=crawl_id, taken=0, refills=0))


async def add_pages(
    session: AsyncSession, ignoring: InsertIgnoring, crawl_id: uuid.UUID, pages: Sequence[NewPage]
) -> None:
    """Add URLs to the frontier; one already there (by normalized URL) is left as it is."""
    now = utcnow()
    rows = [
        {
            "crawl_id": crawl_id,
            "url_key": url_key(page.url),
            "url": page.url,
            "depth": page.depth,
            "found_on": page.found_on,
            "state": page.state,
            "skipped_because": page.skipped_because,
            "job_id": page.job_id,
            "created_at": now,
        }
        for page in pages
    ]
    for start in range(0, len(rows), INSERT_CHUNK):
        await session.execute(ignoring(PAGE), rows[start : start + INSERT_CHUNK])
    await _come_closer(
        session, crawl_id, [row for row in rows if row["state"] == PageState.PENDING]
    )


async def _come_closer(
    session: AsyncSession, crawl_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> None:
    """A URL found again at a smaller depth takes it: a pending one is crawled sooner, and one
    skipped as too deep (a sitemap's deep URL, reached by links within the depth) is pending
    again. The frontier holds each URL at the depth a breadth-first search gives it. One
    statement per (depth, found_on): the links of one page share both."""
    groups: dict[tuple[int, str | None], list[str]] = {}
    for row in rows:
        groups.setdefault((row["depth"], row["found_on"]), []).append(row["url_key"])
    for (depth, found_on), keys in groups.items():
        for start in range(0, len(keys), INSERT_CHUNK):
            await session.execute(
                update(CrawlPage)
                .where(
                    CrawlPage.crawl_id == crawl_id,
                    CrawlPage.url_key.in_(keys[start : start + INSERT_CHUNK]),
                    CrawlPage.depth > depth,
                    or_(
                        CrawlPage.state == PageState.PENDING,
                        and_(
                            CrawlPage.state == PageState.SKIPPED,
                            CrawlPage.skipped_because == SkipReason.DEPTH,
                        ),
                    ),
                )
                .values(
                    state=PageState.PENDING, skipped_because=None, depth=depth, found_on=found_on
                )
                .execution_options(synchronize_session=False)
            )


async def lock_crawl(session: AsyncSession, crawl_id: uuid.UUID) -> int | None:
    """Take the crawl's row for this transaction (refills of one crawl run one at a time);
    returns how many pages it has taken, None if it has no frontier."""
    taken = await session.scalar(
        update(Crawl)
        .where(Crawl.job_id == crawl_id)
        .values(refills=Crawl.refills + 1)
        .returning(Crawl.taken)
    )
    return None if taken is None else int(taken)


async def add_taken(session: AsyncSession, crawl_id: uuid.UUID, count: int) -> None:
    await session.execute(
        update(Crawl).where(Crawl.job_id == crawl_id).values(taken=Crawl.taken + count)
    )


async def in_flight(session: AsyncSession, crawl_id: uuid.UUID) -> int:
    """Pages of the crawl with a job that has not ended (as the frontier knows)."""
    return (await flight(session, crawl_id))[0]


async def flight(session: AsyncSession, crawl_id: uuid.UUID) -> tuple[int, int | None]:
    """(pages with a job that has not ended, the smallest depth among them)."""
    row = (
        await session.execute(
            select(func.count(), func.min(CrawlPage.depth)).where(
                CrawlPage.crawl_id == crawl_id, CrawlPage.state == PageState.QUEUED
            )
        )
    ).one()
    return int(row[0] or 0), None if row[1] is None else int(row[1])


async def next_pending(
    session: AsyncSession, crawl_id: uuid.UUID, limit: int, flying_depth: int | None = None
) -> list[PageRow]:
    """The next pending URLs, breadth first (shallowest, then oldest), no deeper than one
    level below the shallowest page in flight (`flying_depth`) or taken here: a page in
    flight at depth d can still find a pending URL at d + 1, never shallower, so what is
    taken has its final depth (the crawl is a true breadth-first search, pipelined one level
    deep)."""
    rows = await session.execute(
        select(CrawlPage.id, CrawlPage.url, CrawlPage.depth, CrawlPage.state, CrawlPage.job_id)
        .where(CrawlPage.crawl_id == crawl_id, CrawlPage.state == PageState.PENDING)
        .order_by(CrawlPage.depth, CrawlPage.id)
        .limit(limit)
    )
    pages = [PageRow(*row) for row in rows]
    if not pages:
        return pages
    shallowest = pages[0].depth if flying_depth is None else min(flying_depth, pages[0].depth)
    return [page for page in pages if page.depth <= shallowest + 1]


async def has_pending(session: AsyncSession, crawl_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(CrawlPage.id)
        .where(CrawlPage.crawl_id == crawl_id, CrawlPage.state == PageState.PENDING)
        .limit(1)
    )
    return found is not None


async def mark_queued(session: AsyncSession, pairs: Sequence[tuple[int, uuid.UUID]]) -> None:
    """Pending rows now have a page job each: (row id, job id)."""
    for page_id, job_id in pairs:
        await session.execute(
            update(CrawlPage)
            .where(CrawlPage.id == page_id, CrawlPage.state == PageState.PENDING)
            .values(state=PageState.QUEUED, job_id=job_id)
        )


async def mark_skipped(session: AsyncSession, page_ids: Sequence[int], reason: SkipReason) -> None:
    if page_ids:
        await session.execute(
            update(CrawlPage)
            .where(CrawlPage.id.in_(list(page_ids)), CrawlPage.state == PageState.PENDING)
            .values(state=PageState.SKIPPED, skipped_because=reason)
        )


async def skip_all_pending(session: AsyncSession, crawl_id: uuid.UUID, reason: SkipReason) -> None:
    """Every pending URL of the crawl is not crawled (its limit is reached)."""
    await session.execute(
        update(CrawlPage)
        .where(CrawlPage.crawl_id == crawl_id, CrawlPage.state == PageState.PENDING)
        .values(state=PageState.SKIPPED, skipped_because=reason)
    )


async def settle_page(
    session: AsyncSession, job_id: uuid.UUID, state: PageState, reason: SkipReason | None
) -> tuple[uuid.UUID, PageRow] | None:
    """Record the end of a page's job, once: None if it was recorded already (or the job is
    no crawl's page). This conditional update is what makes expansion happen exactly once."""
    row = (
        await session.execute(
            update(CrawlPage)
            .where(CrawlPage.job_id == job_id, CrawlPage.state == PageState.QUEUED)
            .values(state=state, skipped_because=reason)
            .returning(
                CrawlPage.crawl_id,
                CrawlPage.id,
                CrawlPage.url,
                CrawlPage.depth,
                CrawlPage.state,
                CrawlPage.job_id,
            )
        )
    ).first()
    if row is None:
        return None
    return row[0], PageRow(*row[1:])


async def find_page(session: AsyncSession, crawl_id: uuid.UUID, url: str) -> PageRow | None:
    row = (
        await session.execute(
            select(
                CrawlPage.id, CrawlPage.url, CrawlPage.depth, CrawlPage.state, CrawlPage.job_id
            ).where(CrawlPage.crawl_id == crawl_id, CrawlPage.url_key == url_key(url))
        )
    ).first()
    return None if row is None else PageRow(*row)


async def set_page(
    session: AsyncSession,
    page_id: int,
    state: PageState,
    reason: SkipReason | None,
    job_id: uuid.UUID | None,
) -> None:
    await session.execute(
        update(CrawlPage)
        .where(CrawlPage.id == page_id)
        .values(state=state, skipped_because=reason, job_id=job_id)
    )


async def resume(session: AsyncSession, crawl_id: uuid.UUID) -> None:
    """A retried crawl picks up where it stopped: pages whose job was cancelled or failed are
    pending again, and the pages taken are counted anew."""
    ended = select(Job.id).where(
        Job.parent_id == crawl_id, Job.status.in_([JobStatus.CANCELLED, JobStatus.FAILED])
    )
    await session.execute(
        update(CrawlPage)
        .where(
            CrawlPage.crawl_id == crawl_id,
            CrawlPage.state.in_([PageState.QUEUED, PageState.FAILED]),
            CrawlPage.job_id.in_(ended),
        )
        .values(state=PageState.PENDING, job_id=None, skipped_because=None)
    )
    await session.execute(
        update(CrawlPage)
        .where(
            CrawlPage.crawl_id == crawl_id,
            CrawlPage.state == PageState.SKIPPED,
            CrawlPage.skipped_because == SkipReason.LIMIT,
        )
        .values(state=PageState.PENDING, skipped_because=None)
    )
    taken = (
        select(func.count())
        .select_from(CrawlPage)
        .where(
            CrawlPage.crawl_id == crawl_id,
            CrawlPage.state.in_([PageState.QUEUED, PageState.SUCCEEDED, PageState.FAILED]),
        )
        .scalar_subquery()
    )
    await session.execute(update(Crawl).where(Crawl.job_id == crawl_id).values(taken=taken))


async def ended_unsettled(
    session: AsyncSession, crawl_id: uuid.UUID, limit: int
) -> list[tuple[uuid.UUID, str, dict[str, Any] | None]]:
    """Page jobs that ended while their frontier row still says `queued` (the worker that ran
    them died before settling them): the reconciler settles them."""
    rows = await session.execute(
        select(Job.id, Job.status, Job.error)
        .select_from(CrawlPage)
        .join(Job, Job.id == CrawlPage.job_id)
        .where(
            CrawlPage.crawl_id == crawl_id,
            CrawlPage.state == PageState.QUEUED,
            Job.status.in_(TERMINAL),
        )
        .limit(limit)
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def parked_crawls(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """Running crawls no worker holds (their frontier does the work), by id."""
    stmt = select(Job.id).where(
        Job.kind == "crawl", Job.status == JobStatus.RUNNING, Job.worker_id.is_(None)
    )
    if after is not None:
        stmt = stmt.where(Job.id > after)
    rows = await session.execute(stmt.order_by(Job.id).limit(limit))
    return [row[0] for row in rows]


async def count_pages(session: AsyncSession, crawl_id: uuid.UUID) -> dict[str, Any]:
    """`{"discovered", "queued", "running", "succeeded", "failed", "skipped": {reason: n}}`;
    a page whose job runs counts as `running`."""
    pages: dict[str, Any] = {
        "discovered": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": {},
    }
    rows = await session.execute(
        select(CrawlPage.state, CrawlPage.skipped_because, func.count())
        .where(CrawlPage.crawl_id == crawl_id)
        .group_by(CrawlPage.state, CrawlPage.skipped_because)
    )
    for state, reason, count in rows:
        pages["discovered"] += count
        if state == PageState.SKIPPED:
            key = reason or SkipReason.FILTERED
            pages["skipped"][key] = pages["skipped"].get(key, 0) + count
        elif state in (PageState.SUCCEEDED, PageState.FAILED):
            pages[state] += count
        else:  # pending (not yet given a job) or queued: both wait to be crawled
            pages["queued"] += count
    running = await session.scalar(
        select(func.count())
        .select_from(CrawlPage)
        .join(Job, Job.id == CrawlPage.job_id)
        .where(
            CrawlPage.crawl_id == crawl_id,
            CrawlPage.state == PageState.QUEUED,
            Job.status == JobStatus.RUNNING,
        )
    )
    pages["running"] = int(running or 0)
    pages["queued"] -= pages["running"]
    return {"pages": pages}


async def crawl_progress(session: AsyncSession, job: Job) -> dict[str, Any] | None:
    """A running crawl's page counts now (None for any other job: its result stands)."""
    if job.kind != "crawl" or job.status != JobStatus.RUNNING:
        return None
    return await count_pages(session, job.id)


# The status a page shows: its frontier state, or its job's status while the job is live.
PAGE_STATUSES = ("pending", "queued", "running", "succeeded", "failed", "skipped")


PAGE_CURSOR_PATTERN = r"^[0-9]{1,18}$"
"""A crawl's page cursor: the last page's number (any such number is a position)."""


def encode_page_cursor(page_id: int) -> str:
    return str(page_id)


def decode_page_cursor(cursor: str) -> int:
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 18:
        return int(cursor)
    try:  # the older shape: base64 of "p<number>"
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("p"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("The cursor is malformed; use a `next_cursor` from a list.") from exc


@dataclass(frozen=True)
class PageView:
    """A frontier row as `GET /v1/jobs/{id}/pages` shows it."""

    url: str
    depth: int
    status: str
    job_id: uuid.UUID | None
    found_on: str | None
    skipped_because: str | None
    result: dict[str, Any] | None = None


async def list_pages(
    session: AsyncSession,
    crawl_id: uuid.UUID,
    status: str | None,
    cursor: str | None,
    limit: int,
    include_result: bool,
) -> tuple[list[PageView], str | None]:
    """One page of the crawl's frontier, in discovery order; follow the cursor for more."""
    columns: list[Any] = [
        CrawlPage.id,
        CrawlPage.url,
        CrawlPage.depth,
        CrawlPage.state,
        CrawlPage.job_id,
        CrawlPage.found_on,
        CrawlPage.skipped_because,
        Job.status,
    ]
    if include_result:
        columns.append(Job.result)
    stmt = (
        select(*columns)
        .outerjoin(Job, and_(Job.id == CrawlPage.job_id))
        .where(CrawlPage.crawl_id == crawl_id)
    )
    if status in ("queued", "running"):
        stmt = stmt.where(CrawlPage.state == PageState.QUEUED, Job.status == status)
    elif status is not None:
        stmt = stmt.where(CrawlPage.state == status)
    if cursor:
        stmt = stmt.where(CrawlPage.id > decode_page_cursor(cursor))
    rows = list(await session.execute(stmt.order_by(CrawlPage.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    views = [_view(row, include_result) for row in rows]
    return views, encode_page_cursor(rows[-1][0]) if more else None


def _view(row: Any, include_result: bool) -> PageView:
    state, job_status = row[3], row[7]
    shown = job_status if state == PageState.QUEUED and job_status else state
    if shown == JobStatus.CANCELLED:
        shown = "failed"
    result = row[8] if include_result and state == PageState.SUCCEEDED else None
    return PageView(row[1], row[2], shown, row[4], row[5], row[6], result)

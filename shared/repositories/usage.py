"""An owner's usage by UTC day and job kind (GET /v1/usage): jobs, pages, bytes fetched and
browser seconds, from the job rows and their attempts.

- `jobs`: the jobs created that day (a crawl's pages included, under their own kind), with
  how many of them `succeeded` and `failed` so far.
- `pages`: succeeded page jobs (`fetch`, `render`, `scrape`; a crawl's pages are such jobs).
- `bytes_fetched`: the bytes the jobs' attempts read, whatever their end: a page's body
  (decompressed), a rendered page's HTML, an `http` call's answer (the job's `bytes_fetched`,
  added to as each attempt ends; robots.txt and a browser's subresources are not counted).
- `browser_seconds`: the time the jobs' attempts held a browser worker (every attempt of a
  job on the `browser` queue, from its start to its end, whatever its outcome).

Both statements read the owner's jobs of the range through the owner/created index (the
second joins their attempts by job), grouped in the database; a day is counted on the day the
job was created.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import is_postgres
from shared.models import Job, JobAttempt, JobStatus

PAGE_KINDS = ("fetch", "render", "scrape")
BROWSER_QUEUE = "browser"


@dataclass
class UsageRow:
    day: date
    kind: str
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    pages: int = 0
    bytes_fetched: int = 0
    browser_seconds: float = 0.0


def _day(session: AsyncSession, column: Any) -> Any:
    """The UTC day of a timestamp, as `YYYY-MM-DD` text."""
    if is_postgres(session):
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite keeps UTC text: 'YYYY-MM-DD HH:MM:SS...'


def _seconds(session: AsyncSession, start: Any, end: Any) -> Any:
    if is_postgres(session):
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


async def owner_usage(
    session: AsyncSession, owner_id: uuid.UUID, first: date, last: date
) -> list[UsageRow]:
    """Usage per (day, kind) from `first` to `last` (UTC days, both included), by day then
    kind; only the (day, kind) pairs with jobs."""
    since = datetime.combine(first, time(), UTC)
    until = datetime.combine(last + timedelta(days=1), time(), UTC)
    in_range = and_(Job.owner_id == owner_id, Job.created_at >= since, Job.created_at < until)
    day = _day(session, Job.created_at).label("day")
    succeeded = Job.status == JobStatus.SUCCEEDED
    page = and_(succeeded, Job.kind.in_(PAGE_KINDS))
    jobs = (
        select(
            day,
            Job.kind,
            func.count(),
            func.sum(case((succeeded, 1), else_=0)),
            func.sum(case((Job.status == JobStatus.FAILED, 1), else_=0)),
            func.sum(case((page, 1), else_=0)),
            func.sum(func.coalesce(Job.bytes_fetched, 0)),
        )
        .where(in_range)
        .group_by(day, Job.kind)
    )
    rows: dict[tuple[str, str], UsageRow] = {}
    for day_text, kind, count, ok, failed, pages, fetched in (await session.execute(jobs)).all():
        rows[(day_text, kind)] = UsageRow(
            date.fromisoformat(day_text), kind, count, ok or 0, failed or 0, pages or 0,
            int(fetched or 0),
        )  # fmt: skip
    held = _seconds(session, JobAttempt.started_at, JobAttempt.finished_at)
    browser = (
        select(day, Job.kind, func.sum(held))
        .join(JobAttempt, JobAttempt.job_id == Job.id)
        .where(in_range, Job.queue == BROWSER_QUEUE, JobAttempt.finished_at.is_not(None))
        .group_by(day, Job.kind)
    )
    for day_text, kind, seconds in (await session.execute(browser)).all():
        row = rows.setdefault((day_text, kind), UsageRow(date.fromisoformat(day_text), kind))
        row.browser_seconds = round(float(seconds or 0.0), 3)
    return [rows[key] for key in sorted(rows)]

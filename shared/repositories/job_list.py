"""Listing the owner's jobs: filters, keyset pages, and a bounded search by id or URL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Job
from shared.repositories.pagination import after_cursor, encode_cursor

SEARCH_WINDOW = 5000
"""A search that is not a whole id reads at most this many of the owner's jobs (newest first)
per page: the URL is in a JSON column that no index covers; the page's cursor continues after
the last job read."""


@dataclass(frozen=True)
class JobFilters:
    """Filters of a job listing; empty or None means any. `q` is a job id (whole: an index
    lookup), or the start of one or a piece of the job's URL (case-insensitive: a bounded
    scan)."""

    statuses: tuple[str, ...] = ()
    kind: str | None = None
    agent_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None


def _as_id(text: str) -> uuid.UUID | None:
    """The id `text` spells in the canonical form (36 characters with dashes), if it does."""
    text = text.strip()
    try:
        job_id = uuid.UUID(text)
    except ValueError:
        return None
    return job_id if str(job_id) == text.lower() else None


def _filtered(stmt: Select[Any], owner_id: uuid.UUID, filters: JobFilters) -> Select[Any]:
    stmt = stmt.where(Job.owner_id == owner_id)
    if filters.statuses:
        stmt = stmt.where(Job.status.in_(filters.statuses))
    if filters.kind:
        stmt = stmt.where(Job.kind == filters.kind)
    if filters.agent_id:
        stmt = stmt.where(Job.agent_id == filters.agent_id)
    if filters.parent_id:
        stmt = stmt.where(Job.parent_id == filters.parent_id)
    if filters.created_after:
        stmt = stmt.where(Job.created_at > filters.created_after)
    if filters.created_before:
        stmt = stmt.where(Job.created_at < filters.created_before)
    job_id = _as_id(filters.q) if filters.q else None
    if job_id is not None:
        stmt = stmt.where(Job.id == job_id)
    return stmt


def _url_search(filters: JobFilters) -> str | None:
    """The lower-cased text to look for in URLs and ids, unless `q` is a whole id."""
    if not filters.q or _as_id(filters.q) is not None:
        return None
    return filters.q.lower()


async def list_jobs(
    session: AsyncSession,
    owner_id: uuid.UUID,
    filters: JobFilters,
    cursor: str | None,
    limit: int,
) -> tuple[list[Job], str | None]:
    """One page of the owner's jobs, newest first, and the cursor of the next page (None at
    the end). A scanning search's page may hold fewer than `limit` jobs with a cursor set."""
    needle = _url_search(filters)
    if needle is not None:
        return await _search_urls(session, owner_id, filters, needle, cursor, limit)
    stmt = after_cursor(
        _filtered(select(Job), owner_id, filters), Job.created_at, Job.id, cursor, limit
    )
    rows = list((await session.scalars(stmt)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


async def _search_urls(
    session: AsyncSession,
    owner_id: uuid.UUID,
    filters: JobFilters,
    needle: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[Job], str | None]:
    # Only the id, the time and the URL of each job in the window are read, then matched
    # here: the same rule on SQLite and PostgreSQL, and no large input leaves the database.
    window = _filtered(
        select(Job.id, Job.created_at, Job.input["url"].as_string()), owner_id, filters
    )
    scanned = (
        await session.execute(
            after_cursor(window, Job.created_at, Job.id, cursor, SEARCH_WINDOW - 1)
        )
    ).all()
    matched = [
        (row[0], row[1])
        for row in scanned
        if needle in (row[2] or "").lower() or str(row[0]).startswith(needle)
    ]
    next_cursor = None
    if len(matched) > limit:
        matched = matched[:limit]
        next_cursor = encode_cursor(matched[-1][1], matched[-1][0])
    elif len(scanned) >= SEARCH_WINDOW:
        next_cursor = encode_cursor(scanned[-1][1], scanned[-1][0])
    return await _load(session, [job_id for job_id, _ in matched]), next_cursor


async def _load(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[Job]:
    if not ids:
        return []
    rows = await session.scalars(select(Job).where(Job.id.in_(ids)))
    by_id = {job.id: job for job in rows.all()}
    return [by_id[job_id] for job_id in ids if job_id in by_id]

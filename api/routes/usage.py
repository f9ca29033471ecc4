"""The caller's usage: jobs, pages, bytes fetched and browser seconds by UTC day and kind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.usage import UsageDay, UsageOut, UsageTotals
from shared.repositories.usage import owner_usage

router = APIRouter(prefix="/v1", tags=["usage"])

DEFAULT_DAYS = 30


@router.get("/usage", response_model=UsageOut, responses=error_responses(422))
async def get_usage(
    state: StateDep,
    principal: PrincipalDep,
    start: Annotated[
        date | None,
        Query(description="The first UTC day (`YYYY-MM-DD`); default 29 days before `end`."),
    ] = None,
    end: Annotated[
        date | None, Query(description="The last UTC day, included; default today (UTC).")
    ] = None,
) -> UsageOut:
    """Your jobs and pages by UTC day and kind, the bytes they fetched and the browser time
    they used, from `start` to `end` (default: the last 30 days). A job counts on the day it
    was created; an `end` before `start` is an empty range."""
    # The range ends at the midnight after `last`: that day must exist.
    last = min(end or datetime.now(UTC).date(), date.max - timedelta(days=1))
    span = timedelta(days=DEFAULT_DAYS - 1)
    first = start or (last - span if last - date.min >= span else date.min)
    rows = []
    if first <= last:
        async with state.sessionmaker() as session:
            rows = await owner_usage(session, principal.owner_id, first, last)
    days = [UsageDay.model_validate(row) for row in rows]
    totals = UsageTotals(
        jobs=sum(d.jobs for d in days),
        succeeded=sum(d.succeeded for d in days),
        failed=sum(d.failed for d in days),
        pages=sum(d.pages for d in days),
        bytes_fetched=sum(d.bytes_fetched for d in days),
        browser_seconds=round(sum(d.browser_seconds for d in days), 3),
    )
    return UsageOut(start=first, end=last, days=days, totals=totals)

"""A crawl's pages: its frontier, page by page."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, StateDep
from api.errors import error_responses
from api.schemas.crawl import PageList, PageOut, PageStatusName
from api.schemas.pagination import PageCursor
from shared.errors import InvalidState
from shared.repositories import frontier
from shared.repositories import job as jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}/pages", response_model=PageList, responses=error_responses(404, 409, 422))
async def list_pages(
    job_id: uuid.UUID,
    state: StateDep,
    principal: PrincipalDep,
    status: PageStatusName | None = None,
    include: Literal["result"] | None = None,
    cursor: PageCursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> PageList:
    """The URLs of a crawl's frontier in discovery order: each with its depth, status, page
    job and the page that found it, or why it was not crawled. `include=result` adds each
    succeeded page's result. A job that is not a crawl answers 409 `invalid_state`."""
    async with state.sessionmaker() as session:
        job = await jobs.get_job(session, principal.owner_id, job_id)
        if job.kind != "crawl":
            raise InvalidState("Only a crawl has pages.")
        views, next_cursor = await frontier.list_pages(
            session, job.id, status, cursor, limit, include == "result"
        )
    return PageList(items=[PageOut.model_validate(v) for v in views], next_cursor=next_cursor)

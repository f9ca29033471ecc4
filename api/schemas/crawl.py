"""Response bodies of a crawl's pages (`GET /v1/jobs/{id}/pages`)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PageStatusName = Literal["pending", "queued", "running", "succeeded", "failed", "skipped"]
SkipReasonName = Literal["robots", "filtered", "depth", "limit", "duplicate", "blocked", "external"]


class PageOut(BaseModel):
    """One URL of a crawl's frontier."""

    model_config = ConfigDict(from_attributes=True)

    url: str = Field(description="The normalized URL.")
    depth: int = Field(description="Links from the start page (sitemap URLs: 1).")
    status: PageStatusName
    job_id: uuid.UUID | None = Field(
        description="The page's job (a redirect's: the job that got there)."
    )
    found_on: str | None = Field(description="The page (or sitemap) that linked to it.")
    skipped_because: SkipReasonName | None = Field(description="Why it was not crawled.")
    result: dict[str, Any] | None = Field(
        default=None, description="With `include=result`: the page job's result."
    )


class PageList(BaseModel):
    items: list[PageOut]
    next_cursor: str | None

"""The body of GET /v1/usage (api/routes/usage.py)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class UsageDay(BaseModel):
    """One UTC day's usage of one job kind."""

    model_config = ConfigDict(from_attributes=True)

    day: date
    kind: str
    jobs: int = Field(description="Jobs created that day (a crawl's pages included).")
    succeeded: int = Field(description="Of those, how many succeeded (so far).")
    failed: int = Field(description="Of those, how many failed (so far).")
    pages: int = Field(description="Succeeded page jobs (fetch, render, scrape).")
    bytes_fetched: int = Field(description="The bytes of the pages those jobs read.")
    browser_seconds: float = Field(
        description="Time the jobs' attempts held a browser worker (browser queue), in seconds."
    )


class UsageTotals(BaseModel):
    jobs: int
    succeeded: int
    failed: int
    pages: int
    bytes_fetched: int
    browser_seconds: float


class UsageOut(BaseModel):
    """The caller's usage from `start` to `end` (UTC days, both included)."""

    start: date
    end: date
    days: list[UsageDay] = Field(description="By day, then kind; only days and kinds with jobs.")
    totals: UsageTotals

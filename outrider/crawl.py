"""`outrider crawl`: submit a crawl through the HTTP API and follow it with a progress bar."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

POLL_S = 0.5
ENDED = ("succeeded", "failed", "cancelled")


class CrawlError(Exception):
    """The API refused the crawl, or could not be reached."""


@dataclass(frozen=True)
class CrawlRequest:
    """What to crawl, and where the API is."""

    api_url: str
    key: str
    url: str
    depth: int | None = None
    limit: int | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        given = {
            "url": self.url,
            "max_depth": self.depth,
            "limit": self.limit,
            "include_paths": self.include or None,
            "exclude_paths": self.exclude or None,
        }
        return {"kind": "crawl", "input": {k: v for k, v in given.items() if v is not None}}


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    if response.status >= 400:
        error = body.get("error") or {}
        raise CrawlError(f"{response.status} {error.get('code')}: {error.get('message')}")
    return body


def _done(pages: dict[str, Any]) -> tuple[int, int]:
    """(pages ended, pages to crawl in all, as known now)."""
    ended = int(pages.get("succeeded", 0)) + int(pages.get("failed", 0))
    return ended, ended + int(pages.get("queued", 0)) + int(pages.get("running", 0))


def summary(job: dict[str, Any]) -> Table:
    """The crawl's counts as a table."""
    pages = (job.get("result") or {}).get("pages") or {}
    table = Table(title=f"crawl {job['id']}: {job['status']}")
    table.add_column("pages")
    table.add_column("count", justify="right")
    for name in ("discovered", "succeeded", "failed", "queued", "running"):
        table.add_row(name, str(pages.get(name, 0)))
    for reason, count in sorted((pages.get("skipped") or {}).items()):
        table.add_row(f"skipped: {reason}", str(count))
    return table


async def _follow(
    session: aiohttp.ClientSession, job: dict[str, Any], console: Console
) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("crawling", total=None)
        while job["status"] not in ENDED:
            await asyncio.sleep(POLL_S)
            async with session.get(f"/v1/jobs/{job['id']}") as response:
                job = await _json(response)
            ended, total = _done((job.get("result") or {}).get("pages") or {})
            progress.update(task, completed=ended, total=max(total, 1))
    return job


async def run_crawl(request: CrawlRequest, wait: bool, console: Console) -> dict[str, Any]:
    """Submit the crawl; with `wait`, follow it to its end. Returns the job as last read."""
    headers = {"Authorization": f"Bearer {request.key}"}
    try:
        async with aiohttp.ClientSession(request.api_url, headers=headers) as session:
            async with session.post("/v1/jobs", json=request.spec()) as response:
                job = await _json(response)
            console.print(f"crawl {job['id']} queued")
            return await _follow(session, job, console) if wait else job
    except (aiohttp.ClientError, OSError) as exc:
        raise CrawlError(f"cannot reach the API at {request.api_url}: {exc}") from exc

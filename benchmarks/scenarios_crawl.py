"""The `crawl` scenario: one `crawl` job over the generated site, against a bare Scrapy
`CrawlSpider` (benchmarks/bare_crawl.py) with the same concurrency and the same trafilatura
call per page; and, with `--crawl-rss-pages`, the workers' RSS growth over a long crawl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import psutil

from benchmarks.common import ROOT, Sizes, Stats
from benchmarks.stack import Stack, dsn, outrider_stack

Result = dict[str, Any]
DEPTH = 3
WORKERS = 2
WORKER_CONCURRENCY = 50  # per worker, the default: 100 pages in flight, the crawl's own cap
IN_FLIGHT = WORKERS * WORKER_CONCURRENCY

CRAWL_SQL = (
    "SELECT status, extract(epoch FROM created_at)::float8 AS created,"
    " extract(epoch FROM finished_at)::float8 AS finished,"
    " (result->'pages'->>'succeeded')::int AS pages FROM job WHERE id = $1"
)


async def _wait_crawl(db: str, crawl_id: str, timeout_s: float) -> tuple[int, float]:
    conn = await asyncpg.connect(dsn(db))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = await conn.fetchrow(CRAWL_SQL, uuid.UUID(crawl_id))
            if row["status"] not in ("queued", "running"):
                if row["status"] != "succeeded":
                    raise RuntimeError(f"the crawl ended {row['status']}")
                return int(row["pages"]), float(row["finished"]) - float(row["created"])
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise RuntimeError(f"the crawl did not end in {timeout_s:.0f} s")


def _crawl(stack: Stack, depth: int, limit: int, timeout_s: float) -> tuple[int, float]:
    spec = {
        "kind": "crawl",
        "input": {
            "url": f"{stack.target}/site/0",
            "max_depth": depth,
            "limit": limit,
            "sitemap": "skip",
            "include_paths": ["/site/*"],
            "page": {"formats": ["markdown"]},
        },
    }
    auth = {"Authorization": f"Bearer {stack.key}"}
    with httpx.Client(base_url=stack.api, headers=auth, timeout=60) as client:
        response = client.post("/v1/jobs", json=spec)
        response.raise_for_status()
        crawl_id = response.json()["id"]
    return asyncio.run(_wait_crawl(stack.db, crawl_id, timeout_s))


def _outrider_round(stack: Stack, pages: int) -> float:
    procs = stack.start_workers("default", WORKERS, WORKER_CONCURRENCY)
    try:
        _crawl(stack, 1, 20, 120)  # warm-up: robots.txt, pools (not timed)
        stack.reset()
        crawled, seconds = _crawl(stack, DEPTH, pages, 600)
        return crawled / seconds
    finally:
        stack.stop(procs)


def run_bare_crawl(target: str) -> dict[str, Any]:
    """Run benchmarks/bare_crawl.py in its own process; its JSON report."""
    args = ["--base", target, "--depth", str(DEPTH), "--concurrency", str(IN_FLIGHT)]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bare_crawl", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def crawl(rounds: int, sizes: Sizes) -> Result:
    """A crawl of the generated site to depth 3, 2 workers, against Scrapy's CrawlSpider."""
    pages = sizes.site_pages
    with outrider_stack(site_pages=pages) as stack:
        ours, bare = Stats("outrider pages/s", "pages/s"), Stats("scrapy pages/s", "pages/s")
        counts: dict[str, int] = {}
        for _ in range(rounds):
            ours.values.append(_outrider_round(stack, pages))
            stack.reset()
            result = run_bare_crawl(stack.target)
            bare.values.append(result["pages_per_s"])
            counts["scrapy"] = result["pages"]
    ratio = ours.median / bare.median
    return {
        "stats": [ours, bare],
        "ratio": ratio,
        "target": ">= 0.7x Scrapy's pages/s",
        "pass": ratio >= 0.7,
        "notes": f"{pages}-page site, depth {DEPTH}, {IN_FLIGHT} in flight; scrapy saw "
        f"{counts.get('scrapy')} pages",
    }


def _rss_mb(procs: list[Any]) -> float:
    total = 0.0
    for proc in procs:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        total += sum(p.memory_info().rss for p in tree if p.is_running())
    return total / 1e6


def crawl_rss(pages: int) -> Result:
    """Worker RSS (with their parse pools) after a warm-up crawl, then after a crawl of
    `pages` pages (a site of that many pages, depth 20)."""
    with outrider_stack(site_pages=pages) as stack:
        procs = stack.start_workers("default", WORKERS, WORKER_CONCURRENCY)
        try:
            _crawl(stack, 2, 500, 300)
            before = _rss_mb(procs)
            crawled, seconds = _crawl(stack, 20, pages, 3600)
            after = _rss_mb(procs)
        finally:
            stack.stop(procs)
    growth = (after - before) / WORKERS
    return {
        "stats": [],
        "ratio": None,
        "target": "RSS growth <= 50 MB per worker",
        "pass": growth <= 50,
        "notes": f"{crawled} pages in {seconds:.0f} s; RSS {before:.0f} -> {after:.0f} MB "
        f"({WORKERS} workers); growth {growth:.1f} MB per worker",
    }

"""Pipeline scenarios: end-to-end `http` jobs, async concurrency, and `fetch` on a generated site.

Each round of a side starts its workers, warms them up with a few jobs (not timed), empties the
result table, runs the measured jobs and stops the workers, so only the side being measured
runs (plus the shared target server, PostgreSQL and Redis). Sides alternate: A B A B.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg

from benchmarks.bare_worker import TABLE_SQL, enqueue
from benchmarks.common import ROOT, Sizes, Stats
from benchmarks.stack import Stack, dsn, execute, outrider_stack

Result = dict[str, Any]
E2E_WORKERS = 2
FETCH_WORKERS = 2
TARGET_LATENCY_MS = 100


def _warmup_size(jobs: int) -> int:
    return max(min(200, jobs // 5), 10)


def _outrider_round(
    stack: Stack, specs: list[dict[str, Any]], warmup: list[dict[str, Any]], workers: int
) -> float:
    procs = stack.start_workers("default", workers)
    try:
        stack.run(warmup)
        stack.reset()
        return stack.run(specs)
    finally:
        stack.stop(procs)


# --- end to end: http jobs -------------------------------------------------------------------


async def _bare_wait(db: str, total: int, timeout_s: float) -> float:
    conn = await asyncpg.connect(dsn(db))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, extract(epoch FROM max(finished_at))::float8 AS last"
                " FROM bare_result"
            )
            if row["n"] >= total:
                return float(row["last"])
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the bare workers recorded fewer than {total} results")
    finally:
        await conn.close()


def _bare_run(stack: Stack, url: str, jobs: int) -> float:
    pairs = [(uuid.uuid4().hex, url) for _ in range(jobs)]
    started = time.time()
    asyncio.run(enqueue(stack.redis_url, pairs))
    finished = asyncio.run(_bare_wait(stack.db, jobs, 120 + jobs / 20))
    return jobs / (finished - started)


def _bare_http_round(stack: Stack, jobs: int) -> float:
    env = {
        **os.environ,
        "BARE_REDIS_URL": stack.redis_url,
        "BARE_DSN": dsn(stack.db),
        "BARE_POLL_DELAY": stack.env.get("OUTRIDER_WORKER_POLL_DELAY_S", "0.01"),
    }
    procs = [
        stack.procs.start([sys.executable, "-m", "benchmarks.bare_worker"], env)
        for _ in range(E2E_WORKERS)
    ]
    try:
        url = f"{stack.target}/ok"
        _bare_run(stack, url, _warmup_size(jobs))
        asyncio.run(execute(stack.db, "TRUNCATE bare_result"))
        return _bare_run(stack, url, jobs)
    finally:
        stack.procs.stop_some(procs)
        asyncio.run(execute(stack.db, "TRUNCATE bare_result"))


def e2e_http(rounds: int, sizes: Sizes) -> Result:
    """`http` jobs on a local server, 2 workers, submit -> result recorded; against 2 arq
    workers calling the same server and inserting one row (benchmarks/bare_worker.py)."""
    jobs = sizes.e2e_jobs
    with outrider_stack() as stack:
        asyncio.run(execute(stack.db, TABLE_SQL))
        spec = {"kind": "http", "input": {"url": f"{stack.target}/ok"}}
        ours, bare = Stats("outrider jobs/s", "jobs/s"), Stats("bare jobs/s", "jobs/s")
        for _ in range(rounds):
            warmup = [spec] * _warmup_size(jobs)
            ours.values.append(_outrider_round(stack, [spec] * jobs, warmup, E2E_WORKERS))
            stack.reset()
            bare.values.append(_bare_http_round(stack, jobs))
    ratio = ours.median / bare.median
    return {
        "stats": [ours, bare],
        "ratio": ratio,
        "target": ">= 0.5x the bare workers' jobs/s",
        "pass": ratio >= 0.5,
        "notes": f"{jobs} jobs a round, {E2E_WORKERS} workers each side",
    }


# --- concurrency: one worker, a 100 ms target ----------------------------------------------


def concurrency(rounds: int, sizes: Sizes) -> Result:
    """One worker process (default concurrency) against a target that answers in 100 ms."""
    jobs = sizes.concurrency_jobs
    with outrider_stack() as stack:
        url = f"{stack.target}/delay?ms={TARGET_LATENCY_MS}"
        spec = {"kind": "http", "input": {"url": url}}
        stats = Stats("outrider jobs/s", "jobs/s")
        procs = stack.start_workers("default", 1)
        try:
            stack.run([spec] * _warmup_size(jobs))
            for _ in range(rounds):
                stack.reset()
                stats.values.append(stack.run([spec] * jobs))
        finally:
            stack.stop(procs)
    slots = int(stack.env.get("OUTRIDER_WORKER_CONCURRENCY", "50"))
    return {
        "stats": [stats],
        "ratio": None,
        "target": ">= 200 jobs/s from one worker process",
        "pass": stats.median >= 200,
        "notes": f"{jobs} jobs a round; ceiling {slots} slots / 0.1 s = {slots * 10} jobs/s",
    }


# --- fetch: markdown + links on the generated site ------------------------------------------

EXTRACTED_SQL = (
    "SELECT avg(length(result->>'markdown'))::float8 AS markdown_chars,"
    " avg(jsonb_array_length(result->'links'->'internal')"
    " + jsonb_array_length(result->'links'->'external'))::float8 AS links FROM job"
)


def _fetch_specs(target: str, pages: range) -> list[dict[str, Any]]:
    return [
        {"kind": "fetch", "input": {"url": f"{target}/site/{n}", "formats": ["markdown", "links"]}}
        for n in pages
    ]


def fetch(rounds: int, sizes: Sizes) -> Result:
    """`fetch` (markdown + links) of every page of a generated site, 2 workers, against one
    asyncio loop of aiohttp + BeautifulSoup(lxml) (benchmarks/bare_fetch.py)."""
    pages = sizes.site_pages
    with outrider_stack(site_pages=pages) as stack:
        ours, bare = Stats("outrider pages/s", "pages/s"), Stats("bare pages/s", "pages/s")
        extracted: dict[str, Any] = {}
        for _ in range(rounds):
            specs = _fetch_specs(stack.target, range(pages))
            warmup = _fetch_specs(stack.target, range(min(20, pages)))
            ours.values.append(_outrider_round(stack, specs, warmup, FETCH_WORKERS))
            extracted["outrider"] = dict(stack.query(EXTRACTED_SQL))
            stack.reset()
            result = run_bare_fetch(stack.target, pages)
            bare.values.append(result["pages_per_s"])
            extracted["bare"] = {k: result[k] for k in ("markdown_chars", "links")}
    ratio = ours.median / bare.median
    per_page = ", ".join(
        f"{side}: {v['markdown_chars']:.0f} markdown chars, {v['links']:.1f} links"
        for side, v in extracted.items()
    )
    return {
        "stats": [ours, bare],
        "ratio": ratio,
        "target": ">= 0.7x the bare loop's pages/s",
        "pass": ratio >= 0.7,
        "notes": f"{pages} pages a round; per page {per_page}",
        "extracted": extracted,
    }


def run_bare_fetch(target: str, pages: int) -> dict[str, Any]:
    """Run benchmarks/bare_fetch.py in its own process; its JSON report."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bare_fetch", "--base", target, "--pages", str(pages)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result

"""The result cache: `fetch` of a site where half the jobs repeat a URL, with and without
`max_age_s`.

Each round submits every page of the generated site once, waits for them, then submits the
same URLs again (so half of all jobs are repeats), and measures jobs/s over both halves. Side A
sets `max_age_s` (the repeats are answered from the database: no request, no parse); side B
does not (every job fetches). Same stack, same two workers; the cache and the job table are
emptied before each round. Sides alternate: A B A B.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.common import Sizes, Stats
from benchmarks.stack import Stack, execute, outrider_stack, wait_all_succeeded

Result = dict[str, Any]
WORKERS = 2
HITS_SQL = "SELECT count(*) FILTER (WHERE (result->>'cached')::boolean) AS hits FROM job"


def _specs(target: str, pages: int, max_age_s: int) -> list[dict[str, Any]]:
    fields = {"formats": ["markdown", "links"], "max_age_s": max_age_s}
    return [
        {"kind": "fetch", "input": {"url": f"{target}/site/{n}", **fields}} for n in range(pages)
    ]


def _round(stack: Stack, pages: int, max_age_s: int) -> tuple[float, float]:
    """jobs/s over both halves, and over the repeats alone."""
    asyncio.run(execute(stack.db, "TRUNCATE job, result_cache CASCADE"))
    specs = _specs(stack.target, pages, max_age_s)
    limit = 120 + pages / 10
    started = time.time()
    stack.submit(specs)
    asyncio.run(wait_all_succeeded(stack.db, pages, limit))
    repeats_started = time.time()
    stack.submit(specs)  # the repeats
    finished = asyncio.run(wait_all_succeeded(stack.db, 2 * pages, limit))
    return 2 * pages / (finished - started), pages / (finished - repeats_started)


def cache(rounds: int, sizes: Sizes) -> Result:
    """Half repeat URLs: jobs/s with `max_age_s` (cache hits) against without (all fetched)."""
    pages = sizes.site_pages
    with outrider_stack(site_pages=pages) as stack:
        cached, fetched = Stats("max_age_s jobs/s", "jobs/s"), Stats("no cache jobs/s", "jobs/s")
        hit_rate, miss_rate = (
            Stats("repeats, cached", "jobs/s"),
            Stats("repeats, fetched", "jobs/s"),
        )
        hits = 0
        workers = stack.start_workers("default", WORKERS)
        try:
            stack.run(_specs(stack.target, min(20, pages), 0))  # warm-up, not timed
            for _ in range(rounds):
                for stats, repeats, max_age_s in (
                    (cached, hit_rate, 3600),
                    (fetched, miss_rate, 0),
                ):
                    overall, again = _round(stack, pages, max_age_s)
                    stats.values.append(overall)
                    repeats.values.append(again)
                    hits = max(hits, int(stack.query(HITS_SQL)["hits"]))
        finally:
            stack.stop(workers)
    ratio = cached.median / fetched.median
    return {
        "stats": [cached, fetched, hit_rate, miss_rate],
        "ratio": ratio,
        "target": ">= 1.5x the jobs/s without the cache",
        "pass": ratio >= 1.5,
        "notes": f"{2 * pages} jobs a round, {pages} of them repeats ({hits} cache hits); "
        f"the repeats alone {hit_rate.median / miss_rate.median:.1f}x as fast",
    }

"""`queue_control`: does a priority-9 job jump a backlog, and does a delayed job start on time?

One worker of concurrency 10 serves `http` jobs to `/delay?ms=100` (100 jobs/s at most). Each
round submits a backlog of 1,000 priority-0 jobs (10 s of work), waits until the worker is
busy with it, then submits one priority-9 job and one more priority-0 job, both to `/ok`,
and reads their `started_at - created_at` from PostgreSQL. The priority-0 job is the contrast:
it waits its turn behind the backlog (FIFO within a priority). Then a few jobs with `run_at` a
second or two ahead are submitted into the busy worker: `started_at - run_after` is how late
they start (never early: the row refuses to start before it). Targets (issue 21): the
priority-9 job starts within 1 s; a delayed job within 1 s of `run_at`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from benchmarks.common import Sizes, Stats, percentile
from benchmarks.stack import Stack, dsn, outrider_stack, wait_all_succeeded

BACKLOG = 1000
DELAYED = 10
CONCURRENCY = 10

Result = dict[str, Any]


def _submit(stack: Stack, spec: dict[str, Any]) -> str:
    auth = {"Authorization": f"Bearer {stack.key}"}
    response = httpx.post(f"{stack.api}/v1/jobs", json=spec, headers=auth, timeout=30)
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


async def _started(db: str, ids: list[str], since: str, timeout_s: float = 120) -> list[float]:
    """`started_at - <since>` in seconds for each job, once all have started."""
    conn = await asyncpg.connect(dsn(db))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                f"SELECT id::text, extract(epoch FROM started_at - {since})::float8 AS s FROM job"
                " WHERE id = ANY($1::uuid[]) AND started_at IS NOT NULL",
                ids,
            )
            if len(rows) == len(ids):
                by_id = {row["id"]: float(row["s"]) for row in rows}
                return [by_id[i] for i in ids]
            await asyncio.sleep(0.05)
        raise RuntimeError("the measured jobs did not start")
    finally:
        await conn.close()


async def _running(db: str) -> int:
    conn = await asyncpg.connect(dsn(db))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM job WHERE status = 'running'"))
    finally:
        await conn.close()


def _busy(stack: Stack) -> None:
    """Wait until the worker runs the backlog (so the measured jobs queue behind it)."""
    deadline = time.monotonic() + 60
    while asyncio.run(_running(stack.db)) < CONCURRENCY // 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not start the backlog")
        time.sleep(0.05)


def queue_control(rounds: int, sizes: Sizes) -> Result:
    p9, p0, late = (
        Stats("p9 start wait", "s"),
        Stats("p0 start wait", "s"),
        Stats("run_at late p99", "s"),
    )
    early = float("inf")
    with outrider_stack() as stack:
        slow = {"kind": "http", "input": {"url": f"{stack.target}/delay?ms=100"}, "priority": 0}
        quick = {"kind": "http", "input": {"url": f"{stack.target}/ok"}}
        workers = stack.start_workers("default", 1, concurrency=CONCURRENCY)
        submitted = 0
        try:
            for _ in range(rounds):
                stack.submit([slow] * BACKLOG)
                _busy(stack)
                urgent = _submit(stack, {**quick, "priority": 9})
                last = _submit(stack, {**quick, "priority": 0})
                waits = asyncio.run(_started(stack.db, [urgent, last], "created_at"))
                p9.values.append(waits[0])
                p0.values.append(waits[1])
                now = datetime.now(UTC)
                delayed = [
                    _submit(
                        stack,
                        {**quick, "run_at": (now + timedelta(seconds=1 + i / 10)).isoformat()},
                    )
                    for i in range(DELAYED)
                ]
                lateness = asyncio.run(_started(stack.db, delayed, "run_after"))
                early = min(early, *lateness)
                late.values.append(percentile(lateness, 99))
                submitted += BACKLOG + 2 + DELAYED
                asyncio.run(wait_all_succeeded(stack.db, submitted, 300))
        finally:
            stack.stop(workers)
    return {
        "stats": [p9, p0, late],
        "ratio": None,
        "target": "p9 starts <= 1 s behind 1,000 p0 jobs; delayed jobs start <= 1 s after run_at",
        "pass": p9.median <= 1 and late.median <= 1 and early >= 0,
        "notes": f"earliest start relative to run_at {early:+.3f} s; one worker of "
        f"concurrency {CONCURRENCY}, backlog {BACKLOG} x 100 ms",
    }

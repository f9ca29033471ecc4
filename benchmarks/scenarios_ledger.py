"""The `ledger` scenario: does a job cost the same with 10 million jobs of history as with 10,000?

Two Outrider stacks run side by side in the same run, each with its own database, Redis and
API: one seeded with `BASELINE_ROWS` jobs of history, one with `--ledger-rows`
(benchmarks/ledger_seed.py says what the rows are). Each round measures both, A B A B, and
every figure is printed at both sizes with their ratio (the cost at N over the cost at 10k:
time for latencies, 1/rate for rates). Target: every ratio <= 1.3.

Per round and side: a cold `/metrics` scrape (the database gauges recomputed), `POST /v1/jobs`
under wrk (req/s, p50, p99; the jobs it made are deleted again, with their Redis entries),
end-to-end `http` jobs through two workers, `GET /v1/jobs` with each filter and at page 51 of
a keyset walk, `GET /v1/queue`, a reconciler pass and a retention pass that deletes the 500
oldest ended jobs (benchmarks/ledger_pass.py runs the worker's code). At the end of a round
everything the measurements made is deleted (and the tables vacuumed, as autovacuum
would soon do), so the baseline stays at its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from redis import Redis

from benchmarks.common import ROOT, Sizes, Stats, wrk_load
from benchmarks.ledger_seed import AGE_S, SPAN_S, Ledger, seed
from benchmarks.stack import Stack, dsn, outrider_stack

Result = dict[str, Any]
BASELINE_ROWS = 10_000
TARGET_RATIO = 1.3
E2E_WORKERS = 2
REQUESTS = 9  # sequential requests per GET figure (after one not timed)
SNAPSHOT_FACTOR = 10.5  # api/metrics.py keeps a snapshot 10 times as long as it took


@dataclass
class Side:
    """One stack and its seeded ledger."""

    label: str
    stack: Stack
    ledger: Ledger
    owner_id: uuid.UUID
    crawl_id: uuid.UUID
    first_id: uuid.UUID
    metrics_cold_at: float = 0.0
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)


# (figure name, unit, whether bigger is better)
UNITS: dict[str, tuple[str, bool]] = {}


def _unit(name: str, unit: str, higher_better: bool = False) -> str:
    UNITS.setdefault(name, (unit, higher_better))
    return name


async def _fetchval(db: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn(db))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _fetch(db: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn(db))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def _side(label: str, stack: Stack, rows: int) -> Side:
    db = dsn(stack.db)
    owner_id = asyncio.run(_fetchval(db, "SELECT id FROM owner WHERE name = 'bench'"))
    ledger = asyncio.run(seed(db, owner_id, rows))
    crawl_id = asyncio.run(
        _fetchval(
            db,
            "SELECT id FROM job WHERE owner_id = $1 AND kind = 'crawl' AND EXISTS"
            " (SELECT 1 FROM job p WHERE p.parent_id = job.id) ORDER BY created_at DESC LIMIT 1",
            owner_id,
        )
    )
    first_id = asyncio.run(
        _fetchval(db, "SELECT id FROM job WHERE owner_id = $1 LIMIT 1", owner_id)
    )
    return Side(label, stack, ledger, owner_id, crawl_id, first_id)


# --- the figures -------------------------------------------------------------------------------


def _auth(side: Side) -> dict[str, str]:
    return {"Authorization": f"Bearer {side.stack.key}"}


def _get_ms(client: httpx.Client, url: str, params: Any = None) -> list[float]:
    client.get(url, params=params).raise_for_status()
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        client.get(url, params=params).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _list_filters(side: Side) -> dict[str, dict[str, Any]]:
    # A day three quarters into the history: the benchmark owner's jobs fill it at both sizes
    # (at 10k the owner has the second of two blocks; the first is another owner's).
    mid = datetime.fromtimestamp(side.ledger.seeded_until - AGE_S - SPAN_S / 4, UTC)
    return {
        "list: no filter": {},
        "list: status=failed": {"status": "failed"},
        "list: status=queued": {"status": "queued"},
        "list: status=running,queued": {"status": ["running", "queued"]},
        "list: kind=fetch": {"kind": "fetch"},
        "list: kind=scrape": {"kind": "scrape"},
        # The 10k ledger holds one crawl of the owner: a page of 1 at both sizes, so the
        # figure is the walk to the newest match, not 1 row against 50.
        "list: kind=crawl (rare)": {"kind": "crawl", "limit": 1},
        "list: kind=map (none)": {"kind": "map"},
        "list: agent_id": {"agent_id": str(side.ledger.second_agent)},
        "list: agent_id (no jobs)": {"agent_id": str(side.ledger.idle_agent)},
        "list: parent_id": {"parent_id": str(side.crawl_id)},
        "list: created window": {
            "created_after": mid.isoformat(),
            "created_before": (mid + timedelta(days=1)).isoformat(),
        },
        "list: q=url part": {"q": "example.org/docs/page-1"},
        "list: q=id": {"q": str(side.first_id)},
    }


def _lists(side: Side) -> None:
    with httpx.Client(base_url=side.stack.api, headers=_auth(side), timeout=300) as client:
        for name, params in _list_filters(side).items():
            side.add(_unit(name, "ms"), statistics.median(_get_ms(client, "/v1/jobs", params)))
        cursor = None
        for _ in range(50):  # page 51 of the unfiltered list
            params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
            cursor = client.get("/v1/jobs", params=params).raise_for_status().json()["next_cursor"]
        deep = _get_ms(client, "/v1/jobs", {"limit": 50, "cursor": cursor})
        side.add(_unit("list: page 51 (cursor)", "ms"), statistics.median(deep))
        side.add(_unit("GET /v1/queue", "ms"), statistics.median(_get_ms(client, "/v1/queue")))


def _metrics(side: Side) -> None:
    """One scrape that recomputes the database gauges (waits until the last snapshot aged)."""
    time.sleep(max(0.0, side.metrics_cold_at - time.monotonic()))
    started = time.perf_counter()
    httpx.get(f"{side.stack.api}/metrics", timeout=300).raise_for_status()
    took = time.perf_counter() - started
    side.metrics_cold_at = time.monotonic() + max(2.0, SNAPSHOT_FACTOR * took) + 0.2
    side.add(_unit("/metrics (cold)", "ms"), took * 1000)


def _submit(side: Side, seconds: int) -> None:
    body = {"kind": "http", "input": {"url": "http://127.0.0.1:9/ok"}}
    url = f"{side.stack.api}/v1/jobs"
    rps, p50, p99 = wrk_load(url, body, _auth(side), seconds=seconds, connections=16)
    side.add(_unit("submit req/s", "req/s", True), rps)
    side.add(_unit("submit p50", "ms"), p50)
    side.add(_unit("submit p99", "ms"), p99)
    _forget_new_jobs(side)


def _forget_new_jobs(side: Side) -> None:
    """Delete every job the measurements made (and its queue entries), so each round starts
    from the seeded ledger."""
    ids = asyncio.run(
        _fetch(
            dsn(side.stack.db),
            "DELETE FROM job WHERE owner_id = $1 AND created_at >= to_timestamp($2)"
            " RETURNING id::text",
            side.owner_id,
            side.ledger.seeded_until,
        )
    )
    # What autovacuum does to the 10k side by itself within the round (its threshold is 20 %
    # of a small table), done for both before the next figure: otherwise the N side carries
    # the deleted jobs' dead index entries into the next round (`GET /v1/queue` reads the last
    # hour of `ix_job_finished_at`: the deleted rows are all there), which a real ledger,
    # whose recent jobs are not deleted, never does. INDEX_CLEANUP ON: a plain VACUUM of a big
    # table leaves the index entries of a few thousand dead rows in place (under 2 % of its
    # pages), and they would pile up round after round.
    asyncio.run(_vacuum(dsn(side.stack.db)))
    redis = Redis.from_url(side.stack.redis_url)
    try:
        keys = [f"arq:job:{row[0]}" for row in ids]
        for start in range(0, len(keys), 1000):
            redis.delete(*keys[start : start + 1000])
        redis.delete("arq:queue:default")
    finally:
        redis.close()


async def _vacuum(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        for table in ("job", "job_attempt", "webhook_delivery", "job_count"):
            await conn.execute(f"VACUUM (INDEX_CLEANUP ON) {table}")
    finally:
        await conn.close()


_DONE_SQL = """
SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok,
       count(*) FILTER (WHERE status IN ('failed', 'cancelled')) AS bad,
       extract(epoch FROM max(finished_at))::float8 AS last
FROM job WHERE owner_id = $1 AND created_at >= to_timestamp($2)
"""


async def _wait_done(side: Side, since: float, total: int, timeout_s: float) -> float:
    conn = await asyncpg.connect(dsn(side.stack.db))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = await conn.fetchrow(_DONE_SQL, side.owner_id, since)
            if row["bad"]:
                raise RuntimeError(f"{row['bad']} jobs failed")
            if row["ok"] >= total:
                return float(row["last"])
            await asyncio.sleep(0.1)
        raise RuntimeError(f"jobs did not finish in {timeout_s:.0f} s")
    finally:
        await conn.close()


def _e2e(side: Side, jobs: int) -> None:
    stack = side.stack
    specs = [{"kind": "http", "input": {"url": f"{stack.target}/ok"}} for _ in range(jobs)]
    workers = stack.start_workers("default", E2E_WORKERS)
    try:
        warm_since = time.time() - 1
        stack.submit(specs[:50])  # warm-up, not timed
        asyncio.run(_wait_done(side, warm_since, 50, 60))
        started = time.time()
        stack.submit(specs)
        last = asyncio.run(_wait_done(side, started, jobs, 120 + jobs / 20))
        side.add(_unit("e2e jobs/s", "jobs/s", True), jobs / (last - started))
    finally:
        stack.stop(workers)


def _pass(side: Side, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ledger_pass", *args],
        env=side.stack.env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _passes(side: Side) -> None:
    reconcile = _pass(side, "reconcile", "--passes", "5")
    side.add(_unit("reconciler pass", "ms"), statistics.median(reconcile["ms"]))
    # The 500 oldest ended jobs expire: one batch of the pruner, with their attempts and
    # deliveries (the foreign keys cascade).
    cutoff = asyncio.run(
        _fetchval(
            dsn(side.stack.db),
            "SELECT extract(epoch FROM finished_at)::float8 + 0.000001 FROM job"
            " WHERE finished_at IS NOT NULL ORDER BY finished_at OFFSET 499 LIMIT 1",
        )
    )
    retention = _pass(side, "retention", "--cutoff", repr(cutoff))
    side.add(_unit("retention pass (500 jobs)", "ms"), retention["ms"][0])
    if retention["jobs"] < 500:
        raise RuntimeError(f"the retention pass deleted {retention['jobs']} jobs, not 500")


def _round(side: Side, sizes: Sizes) -> None:
    _metrics(side)
    _submit(side, sizes.submit_seconds)
    _e2e(side, sizes.e2e_jobs)
    _lists(side)
    _passes(side)
    _forget_new_jobs(side)


# --- the scenario --------------------------------------------------------------------------


@contextlib.contextmanager
def _two_stacks() -> Iterator[tuple[Stack, Stack]]:
    with outrider_stack(site_pages=10) as small, outrider_stack(site_pages=10) as big:
        yield small, big


def _ratio(name: str, small: float, big: float) -> float:
    _unit_name, higher_better = UNITS[name]
    return small / big if higher_better else big / small


def ledger(rounds: int, sizes: Sizes) -> Result:
    """Every figure at BASELINE_ROWS and at `sizes.ledger_rows` jobs, in the same run."""
    with _two_stacks() as (small_stack, big_stack):
        small = _side("10k", small_stack, BASELINE_ROWS)
        big = _side(f"{sizes.ledger_rows:,}", big_stack, sizes.ledger_rows)
        for _ in range(rounds):
            for side in (small, big):
                _round(side, sizes)
    stats: list[Stats] = []
    ratios: dict[str, float] = {}
    print(f"\nledger: {BASELINE_ROWS:,} vs {sizes.ledger_rows:,} jobs of history")
    print(f"  {'figure':<30}{'10k':>12}{'N':>12}{'ratio':>8}  unit")
    for name, (unit, _higher) in UNITS.items():
        a = Stats(f"{name} @10k", unit, small.figures[name])
        b = Stats(f"{name} @N", unit, big.figures[name])
        stats += [a, b]
        ratios[name] = _ratio(name, a.median, b.median)
        flag = "" if ratios[name] <= TARGET_RATIO else "  <- over"
        print(f"  {name:<30}{a.median:>12.1f}{b.median:>12.1f}{ratios[name]:>8.2f}  {unit}{flag}")
    worst = max(ratios, key=lambda n: ratios[n])
    over = [n for n, r in ratios.items() if r > TARGET_RATIO]
    return {
        "stats": stats,
        "ratio": ratios[worst],
        "target": f"every figure at N within {TARGET_RATIO}x of 10k",
        "pass": not over,
        "notes": f"worst: {worst}; over: {', '.join(over) or 'none'}",
        "ratios": ratios,
    }

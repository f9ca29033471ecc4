"""The `fleet` scenario: throughput per added process, and what one job costs each backing
service, read from the servers' own statistics.

Workers: 1, 2, 4 and 8 `outrider worker` processes (default concurrency 50 each) run
`--fleet-jobs` I/O-bound `http` jobs (`/delay?ms=100`: the target answers in 100 ms); jobs/s
from the first submission to the last `finished_at`. API: 1, 2 and 4 processes
(`outrider api --workers N`) under wrk (`POST /v1/jobs`, 32 connections, no worker running).

For every run: Redis commands per job (the delta of `INFO commandstats` calls, whatever client
made them: API, workers, the harness's few), and PostgreSQL transactions and rows written and
read per job (`pg_stat_database` of the benchmark's database: `xact_commit`, `tup_inserted` +
`tup_updated` + `tup_deleted`, `tup_returned` + `tup_fetched`; the harness's own polling
transactions are subtracted), and how busy the machine's CPUs were.
`pg_stat_statements` would count statements, but it needs a server restart to load, and the
benchmark does not reconfigure a shared server.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import asyncpg
import psutil
from redis import Redis

from benchmarks.common import Sizes, Stats, free_port, wait_http, wrk_load
from benchmarks.stack import Stack, dsn, outrider_stack

Result = dict[str, Any]
WORKER_COUNTS = (1, 2, 4, 8)
API_COUNTS = (1, 2, 4)
TARGET_LATENCY_MS = 100
API_CONNECTIONS = 32

_PG_SQL = """
SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS written,
       tup_returned + tup_fetched AS read
FROM pg_stat_database WHERE datname = current_database()
"""


class Costs:
    """The servers' counters at the start of a run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.redis_before = self._redis()
        self.pg_before = self._pg()
        psutil.cpu_percent()  # start the CPU clock

    def _redis(self) -> collections.Counter[str]:
        client = Redis.from_url(self.stack.redis_url)
        try:
            stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
        finally:
            client.close()
        calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
        return collections.Counter(calls)

    def _pg(self) -> dict[str, int]:
        time.sleep(1.1)  # backends report their statistics at most once a second
        return dict(asyncio.run(_pg_stats(self.stack.db)))

    def per_job(self, jobs: int, own_transactions: int = 0) -> dict[str, Any]:
        cpu = psutil.cpu_percent()
        redis = self._redis() - self.redis_before
        redis["info"] -= 1  # our own reading
        pg = self._pg()
        xacts = pg["xact_commit"] - self.pg_before["xact_commit"] - own_transactions - 1
        top = {name: round(calls / jobs, 2) for name, calls in redis.most_common(8)}
        return {
            "redis_cmds": sum(redis.values()) / jobs,
            "pg_xacts": xacts / jobs,
            "pg_rows_written": (pg["written"] - self.pg_before["written"]) / jobs,
            "pg_rows_read": (pg["read"] - self.pg_before["read"]) / jobs,
            "cpu_pct": cpu,
            "redis_top": top,
        }


async def _pg_stats(db: str) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn(db))
    try:
        row = await conn.fetchrow(_PG_SQL)
        assert row is not None
        return row
    finally:
        await conn.close()


_DONE_SQL = """
SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok,
       count(*) FILTER (WHERE status IN ('failed', 'cancelled')) AS bad,
       extract(epoch FROM max(finished_at))::float8 AS last FROM job
"""


async def _wait(db: str, total: int, timeout_s: float) -> tuple[float, int]:
    """(last finished_at, transactions this poll made) once `total` jobs succeeded."""
    conn = await asyncpg.connect(dsn(db))
    polls = 0
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = await conn.fetchrow(_DONE_SQL)
            polls += 1
            if row["bad"]:
                raise RuntimeError(f"{row['bad']} jobs failed")
            if row["ok"] >= total:
                return float(row["last"]), polls
            await asyncio.sleep(0.25)
        raise RuntimeError(f"jobs did not finish in {timeout_s:.0f} s")
    finally:
        await conn.close()


def _workers_run(stack: Stack, count: int, jobs: int) -> tuple[float, dict[str, Any]]:
    spec = {"kind": "http", "input": {"url": f"{stack.target}/delay?ms={TARGET_LATENCY_MS}"}}
    procs = stack.start_workers("default", count, timeout_s=60 + 30 * count)
    try:
        stack.run([spec] * (50 * count))  # warm-up: every worker takes some
        stack.reset()
        costs = Costs(stack)
        started = time.time()
        stack.submit([spec] * jobs)
        last, polls = asyncio.run(_wait(stack.db, jobs, 120 + jobs / 20))
        rate = jobs / (last - started)
        return rate, costs.per_job(jobs, polls)
    finally:
        stack.stop(procs)
        stack.reset()


def _forget_queue(stack: Stack) -> None:
    stack.reset()
    client = Redis.from_url(stack.redis_url)
    try:
        keys = list(client.scan_iter(match="arq:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def _api_run(stack: Stack, count: int, seconds: int) -> tuple[float, float, dict[str, Any]]:
    port = free_port()
    proc = stack.procs.outrider(stack.env, "api", "--port", str(port), "--workers", str(count))
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60 + 30 * count)
        url = f"http://127.0.0.1:{port}/v1/jobs"
        body = {"kind": "http", "input": {"url": "http://127.0.0.1:9/ok"}}
        auth = {"Authorization": f"Bearer {stack.key}"}
        wrk_load(url, body, auth, seconds=2, connections=API_CONNECTIONS)  # warm-up
        _forget_queue(stack)
        costs = Costs(stack)
        rps, _p50, p99 = wrk_load(url, body, auth, seconds=seconds, connections=API_CONNECTIONS)
        created = int(stack.query("SELECT count(*) AS n FROM job")["n"])
        return rps, p99, costs.per_job(created, 1)
    finally:
        stack.stop([proc])
        _forget_queue(stack)


def fleet(rounds: int, sizes: Sizes) -> Result:
    """Throughput and per-job service costs as worker and API processes are added."""
    jobs = sizes.fleet_jobs
    stats: list[Stats] = []
    costs: dict[str, list[dict[str, Any]]] = {}
    with outrider_stack(site_pages=10) as stack:
        worker_stats = {n: Stats(f"{n} worker(s) jobs/s", "jobs/s") for n in WORKER_COUNTS}
        api_stats = {n: Stats(f"{n} API process(es) req/s", "req/s") for n in API_COUNTS}
        api_p99 = {n: Stats(f"{n} API process(es) p99", "ms") for n in API_COUNTS}
        for _ in range(rounds):
            for n in WORKER_COUNTS:
                rate, cost = _workers_run(stack, n, jobs)
                worker_stats[n].values.append(rate)
                print(f"fleet: {n} worker(s): {rate:.0f} jobs/s {cost}", flush=True)
                costs.setdefault(f"workers={n}", []).append(cost)
            for n in API_COUNTS:
                rps, p99, cost = _api_run(stack, n, sizes.submit_seconds)
                api_stats[n].values.append(rps)
                print(f"fleet: {n} API process(es): {rps:.0f} req/s {cost}", flush=True)
                api_p99[n].values.append(p99)
                costs.setdefault(f"api={n}", []).append(cost)
        stats += [*worker_stats.values(), *api_stats.values(), *api_p99.values()]
    print(f"\nfleet: per job (median of {rounds} rounds), {psutil.cpu_count()} CPUs")
    print(
        f"  {'run':<12}{'rate/s':>9}{'redis cmds':>12}{'pg xacts':>10}{'pg written':>12}"
        f"{'pg read':>10}{'cpu %':>7}  top Redis commands per job"
    )
    summary: dict[str, Any] = {}
    for name, runs in costs.items():
        med = {k: _median([r[k] for r in runs]) for k in runs[0] if k != "redis_top"}
        n = int(name.split("=")[1])
        rate = (worker_stats if name.startswith("workers") else api_stats)[n].median
        summary[name] = {**med, "rate": rate, "redis_top": runs[-1]["redis_top"]}
        top = ", ".join(f"{k} {v}" for k, v in list(runs[-1]["redis_top"].items())[:5])
        print(
            f"  {name:<12}{rate:>9.0f}{med['redis_cmds']:>12.1f}{med['pg_xacts']:>10.2f}"
            f"{med['pg_rows_written']:>12.2f}{med['pg_rows_read']:>10.1f}"
            f"{med['cpu_pct']:>7.0f}  {top}"
        )
    one, most = worker_stats[1].median, max(s.median for s in worker_stats.values())
    return {
        "stats": stats,
        "ratio": most / one,
        "target": "throughput rises with workers until the CPUs are busy",
        "pass": worker_stats[2].median > one,
        "notes": f"{jobs} jobs a run; best/1-worker = {most / one:.2f}",
        "costs": summary,
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]

"""A worker's /metrics port: it parses, and its counters match the jobs it ran in the database.

The worker's counters are per process and other tests' workers ran in this one, so every check
compares what changed across this test with the database rows this test's owner made.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from typing import Any
from uuid import UUID

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.egress import EgressPolicy
from shared.errors import EgressBlocked
from shared.liveness import live_workers
from shared.models import Job, JobAttempt, Owner
from tests.conftest import NewOwner, RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job
from tests.worker.support import eventually, submit
from tests.worker.test_browser_egress import exchange
from tests.worker.test_browser_site import browser_worker
from tests.worker.test_http_client import StaticResolver
from worker.browser_egress import EgressProxy
from worker.counters import REGISTRY
from worker.http_client import create_session

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    """Every sample the worker serves, by (name, sorted labels); it must parse."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


async def metrics_port(redis_url: str, queue: str) -> int:
    """The port this process's live `queue` worker publishes in its liveness entry."""
    redis = Redis.from_url(redis_url)
    found: list[Any] = []

    async def published() -> bool:
        found[:] = [
            w.get("metrics_port")
            for w in await live_workers(redis, f"{socket.gethostname()}:{os.getpid()}:")
            if w["queue"] == queue
        ]
        return len(found) == 1 and found[0] is not None

    try:
        await eventually(published, 10, "the worker's liveness names its metrics port")
    finally:
        await redis.aclose()
    return int(found[0])


async def owner_rows(
    sessionmaker: async_sessionmaker[AsyncSession], owner_name: str
) -> dict[str, Counter[Any]]:
    """This owner's jobs and attempts, counted the way the metrics count them."""
    async with sessionmaker() as session:
        owner_id = await session.scalar(select(Owner.id).where(Owner.name == owner_name))
        jobs = (await session.execute(select(Job).where(Job.owner_id == owner_id))).scalars()
        by_status = Counter((job.status, (job.error or {}).get("code")) for job in jobs)
        attempts = await session.execute(
            select(JobAttempt.outcome, JobAttempt.error_code, func.count())
            .join(Job, Job.id == JobAttempt.job_id)
            .where(Job.owner_id == owner_id)
            .group_by(JobAttempt.outcome, JobAttempt.error_code)
        )
        by_outcome: Counter[Any] = Counter()
        for outcome, code, count in attempts:
            by_outcome[(outcome, code)] = count
    return {"jobs": by_status, "attempts": by_outcome}


async def test_worker_metrics_match_the_jobs_it_ran(
    client: httpx.AsyncClient,
    new_owner: NewOwner,
    run_worker: RunWorker,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis_url: str,
) -> None:
    auth = await new_owner()
    specs = [
        *(http_job(target.url("/ok")) for _ in range(4)),
        {**http_job(target.url("/status/500")), "max_attempts": 2},  # a retry, then failed
        http_job(target.url("/status/404")),  # failed at once: http_4xx
        # A redirect to the cloud metadata address: the engine's URL check refuses the hop.
        http_job(target.url("/redirect?to=http://169.254.169.254/latest/meta-data/")),
    ]
    async with run_worker(worker_metrics_port=0):
        port = await metrics_port(redis_url, "default")
        before = await scrape(port)
        ids = [await submit(client, auth, spec) for spec in specs]
        jobs = await asyncio.gather(*(wait_for_job(client, auth, i) for i in ids))
        after = await scrape(port)

    assert [job["status"] for job in jobs] == ["succeeded"] * 4 + ["failed"] * 3
    name = await _owner_name(sessionmaker, ids[0])
    rows = await owner_rows(sessionmaker, name)
    attempts = rows["attempts"]
    assert sum(attempts.values()) == 8  # 4 + 2 + 1 + 1

    assert delta(after, before, "outrider_jobs_started_total", kind="http") == 8
    assert (
        delta(after, before, "outrider_jobs_succeeded_total", kind="http")
        == (rows["jobs"][("succeeded", None)])
    )
    for code in ("http_500", "http_4xx", "blocked_destination"):
        failed = delta(after, before, "outrider_jobs_failed_total", kind="http", code=code)
        assert failed == rows["jobs"][("failed", code)] == 1, code
    retried = delta(after, before, "outrider_jobs_retried_total", kind="http", code="http_500")
    assert retried == attempts[("retrying", "http_500")] == 1

    # One duration per attempt, by how it ended; one queue wait per claim.
    for outcome, count in (("succeeded", 4), ("retrying", 1), ("failed", 3)):
        observed = delta(
            after, before, "outrider_job_duration_seconds_count", kind="http", outcome=outcome
        )
        assert observed == count == sum(n for (o, _), n in attempts.items() if o == outcome)
    assert delta(after, before, "outrider_job_queue_wait_seconds_count", kind="http") == 8
    assert delta(after, before, "outrider_job_duration_seconds_sum", kind="http") > 0
    assert delta(after, before, "outrider_egress_blocked_total", where="url") == 1
    assert total(after, "outrider_jobs_in_flight", queue="default") == 0
    assert total(after, "process_resident_memory_bytes") > 0
    assert not any(n.startswith("outrider_browser_") for n, _ in after)  # no browser here


async def _owner_name(sessionmaker: async_sessionmaker[AsyncSession], job_id: str) -> str:
    async with sessionmaker() as session:
        name = await session.scalar(
            select(Owner.name).join(Job, Job.owner_id == Owner.id).where(Job.id == UUID(job_id))
        )
    assert name is not None
    return name


async def test_in_flight_counts_running_jobs_and_returns_to_zero(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    hangup_target: TargetServer,
    redis_url: str,
) -> None:
    async with run_worker(worker_metrics_port=0):
        port = await metrics_port(redis_url, "default")
        spec = http_job(hangup_target.url("/slow?s=1.5"))
        ids = [await submit(client, auth, spec) for _ in range(3)]

        async def all_running() -> bool:
            return total(await scrape(port), "outrider_jobs_in_flight", queue="default") == 3

        await eventually(all_running, 10, "three jobs in flight")
        for job_id in ids:
            assert (await wait_for_job(client, auth, job_id))["status"] == "succeeded"
        assert total(await scrape(port), "outrider_jobs_in_flight", queue="default") == 0


async def test_a_taken_port_falls_back_to_a_free_one_and_minus_one_turns_it_off(
    run_worker: RunWorker, redis_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        async with run_worker(worker_metrics_port=busy):
            port = await metrics_port(redis_url, "default")
            assert port not in (busy, 0)
            assert "outrider_jobs_in_flight" in {n for n, _ in await scrape(port)}

    redis = Redis.from_url(redis_url)
    try:
        async with run_worker(worker_metrics_port=-1):

            async def published() -> bool:
                mine = await live_workers(redis, f"{socket.gethostname()}:{os.getpid()}:")
                return len(mine) == 1

            await eventually(published, 10, "the worker's liveness entry")
            (worker,) = await live_workers(redis, f"{socket.gethostname()}:{os.getpid()}:")
            assert worker["metrics_port"] is None
    finally:
        await redis.aclose()


async def test_a_browser_worker_reports_its_chromium(run_worker: RunWorker, redis_url: str) -> None:
    async with browser_worker(run_worker, worker_metrics_port=0):
        port = await metrics_port(redis_url, "browser")
        samples = await scrape(port)
    assert total(samples, "outrider_browser_processes") >= 2  # the browser and its helpers
    assert total(samples, "outrider_browser_rss_bytes") > 10 * 1024 * 1024
    assert total(samples, "outrider_jobs_in_flight", queue="browser") == 0


async def test_politeness_waits_and_deferrals_are_counted(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis_url: str,
) -> None:
    agent = await client.post(
        "/v1/agents", json={"name": "paced", "host_rate_per_s": 4}, headers=auth
    )
    assert agent.status_code == 201, agent.text
    spec = {**http_job(target.url("/ok")), "agent_id": agent.json()["id"]}
    async with run_worker(worker_metrics_port=0), asyncio.timeout(30):
        port = await metrics_port(redis_url, "default")
        before = await scrape(port)
        batch = await client.post("/v1/jobs/batch", json={"jobs": [spec] * 10}, headers=auth)
        ids = [job["id"] for job in batch.json()["jobs"]]
        for job_id in ids:
            assert (await wait_for_job(client, auth, job_id))["status"] == "succeeded"
        after = await scrape(port)

    rows = await owner_rows(sessionmaker, await _owner_name(sessionmaker, ids[0]))
    deferred = rows["attempts"][("deferred", None)]
    assert deferred >= 1  # 10 requests at 4/s, waits up to 1 s: some must go back to the queue
    assert delta(after, before, "outrider_politeness_waits_total", action="defer") == deferred
    waits = delta(after, before, "outrider_politeness_waits_total", action="wait")
    assert waits >= 1
    observed = delta(after, before, "outrider_politeness_wait_seconds_count", action="wait")
    assert observed == waits
    requeued = delta(after, before, "outrider_jobs_requeued_total", kind="http", reason="deferred")
    assert requeued == deferred


async def test_egress_refusals_are_counted_where_they_happen() -> None:
    def blocked(where: str) -> float:
        value = REGISTRY.get_sample_value("outrider_egress_blocked_total", {"where": where})
        return value or 0.0

    before = {where: blocked(where) for where in ("url", "connect", "browser_proxy")}
    policy = EgressPolicy(allowed_ports=["1-65535"])  # loopback forbidden
    resolver = StaticResolver({"rebind.example": ["127.0.0.1"]})
    async with create_session(policy, resolver=resolver) as session:
        for url in ("http://rebind.example/", "http://127.0.0.1/"):  # by its answer; by URL
            with pytest.raises(EgressBlocked):
                await session.get(url)
    proxy = EgressProxy(policy)
    await proxy.start()
    try:
        answer = await exchange(proxy, "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        assert "blocked_destination" in answer
        await exchange(proxy, "CONNECT no-such-host.invalid:443 HTTP/1.1\r\n\r\n")  # not policy
    finally:
        await proxy.close()
    after = {where: blocked(where) - before[where] for where in before}
    assert after == {"url": 1, "connect": 1, "browser_proxy": 1}

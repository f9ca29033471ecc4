"""GET /metrics on the API: it parses, its job gauges match the database, its counters match
the jobs this process created, it caches, and OUTRIDER_METRICS_TOKEN closes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import api.metrics
from shared.models import Job
from shared.settings import Settings
from tests.conftest import NewOwner, RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def values(samples: Samples, name: str) -> dict[tuple[str, ...], float]:
    """`name`'s samples by their label values (in label-name order)."""
    return {
        tuple(v for _, v in labels): value for (n, labels), value in samples.items() if n == name
    }


async def database_counts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[tuple[str, ...], float]:
    """COUNT(*) of the job table by (kind, queue, status): the label order of `outrider_jobs`."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Job.kind, Job.queue, Job.status, func.count()).group_by(
                Job.kind, Job.queue, Job.status
            )
        )
        return {(kind, queue, status): count for kind, queue, status, count in rows}


@pytest.fixture
def fresh_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scrape reads the database (no caching between a test's scrapes)."""
    monkeypatch.setattr(api.metrics, "SNAPSHOT_TTL_S", 0.0)
    monkeypatch.setattr(api.metrics, "SLOW_QUERY_FACTOR", 0.0)


@pytest.mark.usefixtures("fresh_snapshots")
async def test_metrics_parse_and_match_the_database(
    client: httpx.AsyncClient,
    new_owner: NewOwner,
    run_worker: RunWorker,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    auth = await new_owner()
    before = await scrape(client)
    ok, failing = http_job(target.url("/ok")), http_job(target.url("/status/404"))
    ids = [(await client.post("/v1/jobs", json=ok, headers=auth)).json()["id"] for _ in range(3)]
    replay = {**auth, "Idempotency-Key": "metrics-once"}
    for _ in range(2):  # the replay creates nothing and is not counted
        ids.append((await client.post("/v1/jobs", json=ok, headers=replay)).json()["id"])
    batch = await client.post("/v1/jobs/batch", json={"jobs": [ok, failing]}, headers=auth)
    ids += [job["id"] for job in batch.json()["jobs"]]
    async with run_worker():
        jobs = [await wait_for_job(client, auth, job_id) for job_id in dict.fromkeys(ids)]
    assert sorted(job["status"] for job in jobs) == ["failed"] + ["succeeded"] * 5
    retried = await client.post(f"/v1/jobs/{jobs[-1]['id']}/retry", headers=auth)
    assert retried.status_code == 200, retried.text

    after = await scrape(client)
    counts = await database_counts(sessionmaker)  # nothing runs now: the same moment
    q = ("default", "queued")
    created = values(after, "outrider_jobs_submitted_total")[("http",)]
    assert created - values(before, "outrider_jobs_submitted_total")[("http",)] == len(jobs) == 6
    by_user = values(after, "outrider_jobs_retried_by_user_total")[("http",)]
    assert by_user - values(before, "outrider_jobs_retried_by_user_total")[("http",)] == 1

    gauges = values(after, "outrider_jobs")
    assert {k: v for k, v in gauges.items() if v} == counts
    assert all(status in {s for _, _, s in gauges} for status in ("queued", "cancelled"))
    assert values(after, "outrider_metrics_snapshot_ok") == {(): 1}
    for name in ("ready", "deferred", "running", "oldest_ready_age_seconds", "in_redis"):
        assert set(values(after, f"outrider_queue_{name}")) >= {("default",), ("browser",)}
    waiting = sum(n for (_, queue, status), n in counts.items() if (queue, status) == q)
    ready = values(after, "outrider_queue_ready")[("default",)]
    assert ready + values(after, "outrider_queue_deferred")[("default",)] == waiting >= 1
    assert values(after, "outrider_workers_live")[("default",)] == 0
    assert values(after, "outrider_queue_throughput_per_second")[("default",)] >= 0
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_scrapes_within_the_ttl_share_one_snapshot(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.metrics, "SNAPSHOT_TTL_S", 1.0)
    monkeypatch.setattr(api.metrics, "SLOW_QUERY_FACTOR", 0.0)
    # The snapshot's clock is the test's to move: on a loaded machine the scrapes below could
    # otherwise straddle the TTL.
    now = [time.monotonic() + 100]  # past any snapshot an earlier test left
    monkeypatch.setattr(api.metrics, "time", SimpleNamespace(monotonic=lambda: now[0]))

    def queued(samples: Samples) -> float:
        return sum(v for k, v in values(samples, "outrider_jobs").items() if k[2] == "queued")

    first = await scrape(client)
    response = await client.post("/v1/jobs", json=http_job(target.url("/ok")), headers=auth)
    assert response.status_code == 202
    many = await asyncio.gather(*(scrape(client) for _ in range(5)))
    assert {queued(s) for s in many} == {queued(first)}  # cached: the new row is not seen yet
    now[0] += 0.9
    assert queued(await scrape(client)) == queued(first)  # still within the TTL
    now[0] += 0.2
    assert queued(await scrape(client)) == queued(first) + 1


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with OUTRIDER_METRICS_TOKEN set."""
    from api.app import create_app

    app = create_app(settings.model_copy(update={"metrics_token": SecretStr("scrape-me")}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


async def test_a_metrics_token_closes_the_endpoint(
    guarded: httpx.AsyncClient, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, auth, {"Authorization": "scrape-me"}):
        response = await guarded.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
    samples = await scrape(guarded, {"Authorization": "Bearer scrape-me"})
    assert ("outrider_metrics_snapshot_ok", ()) in samples
    assert (await client.get("/metrics")).status_code == 200  # unset: open


async def test_http_metrics_label_requests_by_route_template(
    settings: Settings, auth: dict[str, str], target: TargetServer
) -> None:
    from api.app import create_app

    app = create_app(settings)  # EdgeMiddleware (api/middleware.py) counts every request
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            before = await scrape(http)
            created = await http.post("/v1/jobs", json=http_job(target.url("/ok")), headers=auth)
            for job_id in (created.json()["id"], "6f0d1b8e-0000-4000-8000-000000000000"):
                await http.get(f"/v1/jobs/{job_id}", headers=auth)
            await http.get("/no/such/route")
            after = await scrape(http)

    def requests(samples: Samples) -> dict[tuple[str, ...], float]:
        return values(samples, "outrider_http_requests_total")  # (method, route, status)

    changed = {k: v - requests(before).get(k, 0) for k, v in requests(after).items()}
    assert {k: v for k, v in changed.items() if v} == {
        ("GET", "/metrics", "200"): 1,  # the first scrape
        ("POST", "/v1/jobs", "202"): 1,
        ("GET", "/v1/jobs/{job_id}", "200"): 1,
        ("GET", "/v1/jobs/{job_id}", "404"): 1,
        ("GET", "unmatched", "404"): 1,
    }
    durations = values(after, "outrider_http_request_duration_seconds_count")
    assert durations[("GET", "/v1/jobs/{job_id}")] >= 2

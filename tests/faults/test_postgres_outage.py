"""PostgreSQL "restarts" under load (a proxy in front of it is cut for 5 s, every connection
reset): the API answers 503 with Retry-After meanwhile, never 500, and afterwards every job
finishes; none is left `running`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job, JobAttempt
from tests.e2e.cluster import bearer, wait_all_terminal
from tests.e2e.conftest import StartCluster
from tests.faults.proxy import TcpProxy
from tests.helpers import TargetServer, http_job

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

JOBS = 40
OUTAGE_S = 5.0
PROBE_EVERY_S = 0.25
FINISH_TIMEOUT_S = 90.0


async def _probe_outage(
    client: httpx.AsyncClient, headers: dict[str, str], spec: dict[str, object]
) -> Counter[int]:
    """Read and submit throughout the outage; every answer must be a 503 with Retry-After."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        for response in (
            await client.get("/v1/jobs", headers=headers),
            await client.post("/v1/jobs", json=spec, headers=headers),
        ):
            statuses[response.status_code] += 1
            assert response.status_code == 503, (response.status_code, response.text)
            assert int(response.headers["Retry-After"]) > 0
            assert response.json()["error"]["code"] == "service_unavailable"
        await asyncio.sleep(PROBE_EVERY_S)
    return statuses


async def _wait_running(
    client: httpx.AsyncClient, headers: dict[str, str], count: int, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = await client.get(
            "/v1/jobs", params={"status": "running", "limit": 100}, headers=headers
        )
        response.raise_for_status()
        if len(response.json()["items"]) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} jobs running after {timeout_s} s")


async def test_postgres_restart_mid_run(
    pg_proxy: tuple[TcpProxy, str],
    start_cluster: StartCluster,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    proxy, proxied_url = pg_proxy
    cluster = await start_cluster(workers=2, concurrency=5, database_url=proxied_url)
    headers = bearer(await cluster.create_key(f"pg-{uuid.uuid4().hex[:8]}"))
    spec = http_job(target.url("/slow?s=1"))
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as client:
        response = await client.post(
            "/v1/jobs/batch", json={"jobs": [spec] * JOBS}, headers=headers
        )
        assert response.status_code == 202, response.text
        ids = [job["id"] for job in response.json()["jobs"]]
        await _wait_running(client, headers, count=5)

        cut = proxy.cut()
        outage = await _probe_outage(client, headers, spec)
        proxy.open()
        reopened_at = time.monotonic()

        jobs = await wait_all_terminal(client, headers, ids, timeout_s=FINISH_TIMEOUT_S)
        finished_s = time.monotonic() - reopened_at
        listing = await client.get("/v1/jobs", headers=headers)

    assert cut > 0
    assert outage[503] >= 4, "the API was probed throughout the outage"
    assert Counter(job["status"] for job in jobs.values()) == {"succeeded": JOBS}
    # The workers stayed alive throughout: no job was run twice, although the leases expired
    # while the database was away (only a claim cut off mid-COMMIT, which never ran, is freed
    # as `lost`: see test_lost_claim.py).
    assert target.hits["/slow"] == JOBS
    assert listing.status_code == 200
    assert len(listing.json()["items"]) == JOBS, "no submission was accepted during the outage"

    job_ids = [uuid.UUID(i) for i in ids]
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Job).where(Job.id.in_(job_ids)))).all()
        attempts = (
            await session.scalars(select(JobAttempt).where(JobAttempt.job_id.in_(job_ids)))
        ).all()
    assert {(row.status, row.worker_id, row.lease_expires_at) for row in rows} == {
        ("succeeded", None, None)
    }
    assert all(row.result is not None and row.result["status"] == 200 for row in rows)
    assert "running" not in {a.outcome for a in attempts}, Counter(a.outcome for a in attempts)
    outcomes = Counter(a.outcome for a in attempts)
    assert outcomes["succeeded"] == JOBS
    assert set(outcomes) <= {"succeeded", "lost"}, outcomes
    assert all(p.poll() is None for p in cluster.procs.values()), "no process died"
    assert cluster.log_events("api")["api.unhandled_error"] == 0
    requeued = sum(cluster.log_events(w)["job.orphan_requeued"] for w in cluster.procs)
    print(f"cut {cut} connections; outage answers {dict(outage)}; done {finished_s:.1f} s later;")
    print(f"claims cut off mid-commit and freed: {requeued}")
    assert requeued == outcomes["lost"]

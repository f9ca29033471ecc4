"""The whole system as separate processes: API and two workers over real HTTP and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job, JobAttempt
from tests.e2e.cluster import bearer, wait_all_terminal
from tests.e2e.conftest import StartCluster
from tests.helpers import TargetServer, http_job

pytestmark = pytest.mark.e2e

SINGLES = 100
BATCHES = 4
BATCH_SIZE = 25
PARALLEL = 10


async def _submit_singles(
    client: httpx.AsyncClient, headers: dict[str, str], specs: list[dict[str, Any]]
) -> list[str]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(spec: dict[str, Any]) -> str:
        async with gate:
            response = await client.post("/v1/jobs", json=spec, headers=headers)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    return list(await asyncio.gather(*(one(spec) for spec in specs)))


async def _submit_batch(
    client: httpx.AsyncClient, headers: dict[str, str], specs: list[dict[str, Any]]
) -> list[str]:
    response = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=headers)
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    assert [job["input"]["url"] for job in jobs] == [spec["input"]["url"] for spec in specs]
    return [job["id"] for job in jobs]


async def test_200_jobs_on_two_worker_processes(
    start_cluster: StartCluster,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    cluster = await start_cluster(workers=2, concurrency=10)
    headers = bearer(await cluster.create_key(f"e2e-{uuid.uuid4().hex[:8]}"))
    specs = [http_job(target.url(f"/json?n={n}")) for n in range(SINGLES + BATCHES * BATCH_SIZE)]
    batches = [
        specs[SINGLES + b * BATCH_SIZE : SINGLES + (b + 1) * BATCH_SIZE] for b in range(BATCHES)
    ]
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as client:
        submitted = await asyncio.gather(
            _submit_singles(client, headers, specs[:SINGLES]),
            *(_submit_batch(client, headers, batch) for batch in batches),
        )
        ids = [job_id for group in submitted for job_id in group]
        assert len(set(ids)) == len(specs) == 200
        jobs = await wait_all_terminal(client, headers, ids, timeout_s=90)

    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    assert {job["attempts"] for job in jobs.values()} == {1}
    assert {job["result"]["status"] for job in jobs.values()} == {200}
    assert sorted(int(job["result"]["body"]["query"]["n"]) for job in jobs.values()) == list(
        range(200)
    )
    # Every job reached the target exactly once: no duplicate execution across workers.
    assert target.hits["/json"] == 200

    job_ids = [uuid.UUID(i) for i in ids]
    async with sessionmaker() as session:
        rows = (await session.execute(select(Job).where(Job.id.in_(job_ids)))).scalars().all()
        attempts = await session.execute(
            select(JobAttempt.outcome, func.count())
            .where(JobAttempt.job_id.in_(job_ids))
            .group_by(JobAttempt.outcome)
        )
        workers = await session.scalar(
            select(func.count(func.distinct(JobAttempt.worker_id))).where(
                JobAttempt.job_id.in_(job_ids)
            )
        )
    assert len(rows) == 200
    assert {(row.status, row.attempts, row.worker_id) for row in rows} == {("succeeded", 1, None)}
    assert dict(attempts.all()) == {"succeeded": 200}
    assert workers == 2, "both worker processes took jobs"
    assert all(proc.poll() is None for proc in cluster.procs.values())


async def test_revoked_key_is_refused(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(workers=0)  # the API alone
    key = await cluster.create_key(f"e2e-{uuid.uuid4().hex[:8]}")
    other = await cluster.create_key(f"e2e-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as client:
        assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200

        code, out, err = await cluster.cli("keys", "revoke", key)
        assert code == 0, err
        assert out == ""

        response = await client.get("/v1/jobs", headers=bearer(key))
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert (await client.get("/v1/jobs", headers=bearer(other))).status_code == 200

    # Revoking again finds nothing to revoke.
    code, _, err = await cluster.cli("keys", "revoke", key)
    assert code == 1, err

"""A claim whose commit went through but whose reply the worker never saw (the database
connection died mid-COMMIT): the row says a live worker runs the job, the worker knows nothing
of it. The reconciler must free it once its lease runs out, and the job must then run once."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Owner
from shared.repositories.agent import get_default_agent
from shared.repositories.execution import claim_job
from shared.repositories.job import insert_jobs
from tests.e2e.cluster import bearer
from tests.e2e.conftest import StartCluster
from tests.helpers import TargetServer, wait_for_job

pytestmark = pytest.mark.e2e

LEASE_S = 3.0  # OUTRIDER_WORKER_LEASE_S of the cluster


async def _insert_claimed_job(
    sessionmaker: async_sessionmaker[AsyncSession], owner_name: str, url: str, worker_id: str
) -> str:
    """Insert a job (not enqueued: the reconciler would enqueue it after the 1 s grace) and at
    once claim it for `worker_id`, as if that worker's claim had committed and its reply had
    been lost: nothing in the worker's memory, nothing in Redis."""
    async with sessionmaker.begin() as session:
        owner = await session.scalar(select(Owner).where(Owner.name == owner_name))
        assert owner is not None
        agent = await get_default_agent(session, owner.id)
        row = {
            "owner_id": owner.id,
            "agent_id": agent.id,
            "kind": "http",
            "queue": "default",
            "input": {"method": "GET", "url": url},
            "max_attempts": 3,
            "timeout_s": 10.0,
        }
        (job,) = await insert_jobs(session, [row])
    async with sessionmaker.begin() as session:  # a session of its own, like a claim
        claim = await claim_job(session, job.id, worker_id, LEASE_S)
        assert claim is not None
    return str(job.id)


async def test_a_claim_the_worker_never_saw_is_freed_and_run_once(
    start_cluster: StartCluster,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    cluster = await start_cluster(workers=1, concurrency=2)
    ((_, worker_id),) = (await cluster.wait_workers()).items()
    owner_name = f"lost-claim-{uuid.uuid4().hex[:8]}"
    headers = bearer(await cluster.create_key(owner_name))
    job_id = await _insert_claimed_job(sessionmaker, owner_name, target.url("/ok"), worker_id)
    claimed_at = time.monotonic()

    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as client:
        running = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        assert running["status"] == "running"
        job = await wait_for_job(client, headers, job_id, timeout_s=LEASE_S + 15)
        freed_s = time.monotonic() - claimed_at
        attempts = (await client.get(f"/v1/jobs/{job_id}/attempts", headers=headers)).json()

    assert job["status"] == "succeeded", job
    assert freed_s > LEASE_S, "not before the lease ran out"
    items = attempts["items"]
    assert [(a["outcome"], a["error_code"]) for a in items] == [
        ("lost", "worker_lost"),
        ("succeeded", None),
    ]
    assert [a["worker_id"] for a in items] == [worker_id, worker_id]
    assert target.hits["/ok"] == 1
    assert cluster.log_events("worker-0")["job.orphan_requeued"] == 1

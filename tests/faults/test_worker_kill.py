"""A worker process SIGKILLed mid-job: the lease expires, the reconciler requeues the job, the
other worker runs it to success, and the attempt history shows what happened."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx
import pytest

from tests.e2e.cluster import bearer
from tests.e2e.conftest import StartCluster
from tests.helpers import TargetServer, http_job, wait_for_job

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 10.0
SLOW_S = 3


async def _wait_for_hit(target: TargetServer, path: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while target.hits[path] < count:
        assert time.monotonic() < deadline, f"{path} not hit {count} times in {timeout_s} s"
        await asyncio.sleep(0.02)


async def test_sigkill_mid_job_is_recovered_by_the_other_worker(
    start_cluster: StartCluster, target: TargetServer
) -> None:
    cluster = await start_cluster(workers=2, concurrency=1)
    live = await cluster.wait_workers()
    headers = bearer(await cluster.create_key(f"kill-{uuid.uuid4().hex[:8]}"))
    spec = {**http_job(target.url(f"/slow?s={SLOW_S}")), "timeout_s": JOB_TIMEOUT_S}
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as client:
        response = await client.post("/v1/jobs", json=spec, headers=headers)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        # The request is at the target: the job is mid-flight in exactly one worker.
        await _wait_for_hit(target, "/slow", 1, timeout_s=15)
        attempts = (await client.get(f"/v1/jobs/{job_id}/attempts", headers=headers)).json()
        (first,) = attempts["items"]
        assert first["outcome"] == "running"
        victim = next(pid for pid, wid in live.items() if wid == first["worker_id"])
        survivor = next(pid for pid in live if pid != victim)

        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        job = await wait_for_job(client, headers, job_id, timeout_s=JOB_TIMEOUT_S + 15)
        recovered_s = time.monotonic() - killed_at
        attempts = (await client.get(f"/v1/jobs/{job_id}/attempts", headers=headers)).json()

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["error"] is None
    assert job["result"]["status"] == 200
    assert job["result"]["body"] == "slow"
    items = attempts["items"]
    assert [a["outcome"] for a in items] == ["lost", "succeeded"], items
    assert [a["number"] for a in items] == [1, 2]
    assert items[0]["error_code"] == "worker_lost"
    assert items[0]["worker_id"] == live[victim]
    assert items[1]["worker_id"] == live[survivor]
    assert target.hits["/slow"] == 2
    victim_proc = next(p for p in cluster.workers if p.pid == victim)
    assert victim_proc.wait(5) == -signal.SIGKILL
    assert all(p.poll() is None for p in cluster.workers if p.pid != victim)
    print(f"recovered {recovered_s:.1f} s after the kill")

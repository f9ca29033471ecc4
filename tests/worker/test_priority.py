"""Priorities end to end: a high-priority job jumps a queue of low ones."""

from __future__ import annotations

import httpx

from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job


async def test_a_high_priority_job_runs_before_a_backlog_of_low_ones(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, target: TargetServer
) -> None:
    lows = [{**http_job(target.url(f"/json?low={n}")), "priority": 0} for n in range(40)]
    batch = await client.post("/v1/jobs/batch", json={"jobs": lows}, headers=auth)
    high = await client.post(
        "/v1/jobs", json={**http_job(target.url("/json?high=1")), "priority": 9}, headers=auth
    )
    assert high.json()["priority"] == 9
    async with run_worker(concurrency=1):
        done_high = await wait_for_job(client, auth, high.json()["id"], timeout_s=30)
        done_lows = [
            await wait_for_job(client, auth, job["id"], timeout_s=60)
            for job in batch.json()["jobs"]
        ]

    assert done_high["status"] == "succeeded", done_high
    ahead = [job for job in done_lows if job["started_at"] < done_high["started_at"]]
    assert len(ahead) <= 1, f"{len(ahead)} low-priority jobs ran before the high one"

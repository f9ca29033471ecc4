"""Delayed jobs: `run_at` / `delay_s` hold a job queued until its time, durably."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from shared.queue import queue_key
from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_delayed_job_waits_queued_then_runs(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, target: TargetServer
) -> None:
    async with run_worker():
        answer = await client.post(
            "/v1/jobs", json={**http_job(target.url("/json?d=1")), "delay_s": 1.5}, headers=auth
        )
        queued = answer.json()
        done = await wait_for_job(client, auth, queued["id"], timeout_s=20)

    assert answer.status_code == 202, answer.text
    assert queued["status"] == "queued"
    due = _at(queued["run_at"])
    assert due - _at(queued["created_at"]) > timedelta(seconds=1.4)
    assert done["status"] == "succeeded", done
    assert _at(done["started_at"]) >= due
    assert done["run_at"] is None


async def test_a_delayed_job_whose_queue_entry_was_lost_still_runs(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    target: TargetServer,
    redis_url: str,
) -> None:
    """The row is the truth: the reconciler enqueues a due job that Redis lost."""
    run_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    spec = {**http_job(target.url("/json?d=2")), "run_at": run_at}
    job = (await client.post("/v1/jobs", json=spec, headers=auth)).json()
    redis = Redis.from_url(redis_url)
    try:
        # What a Redis that lost its data (no AOF) holds of the job: nothing.
        assert await redis.zrem(queue_key("default"), job["id"]) == 1
        assert await redis.delete(job_key_prefix + job["id"]) == 1
    finally:
        await redis.aclose()
    async with run_worker():
        done = await wait_for_job(client, auth, job["id"], timeout_s=20)
    assert done["status"] == "succeeded", done


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"delay_s": 5, "run_at": "2030-01-01T00:00:00Z"}, "either"),
        ({"run_at": "2030-01-01T00:00:00"}, "timezone"),
        ({"run_at": "2999-01-01T00:00:00Z"}, "days ahead"),
        ({"delay_s": -1}, "greater than or equal"),
    ],
)
async def test_bad_delays_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], extra: dict[str, object], problem: str
) -> None:
    answer = await client.post(
        "/v1/jobs", json={**http_job("http://127.0.0.1:9/x"), **extra}, headers=auth
    )
    assert answer.status_code == 422, answer.text
    assert problem in answer.text


async def test_a_past_run_at_runs_now(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, target: TargetServer
) -> None:
    spec = {**http_job(target.url("/json?d=3")), "run_at": "2020-01-01T00:00:00+02:00"}
    async with run_worker():
        job = (await client.post("/v1/jobs", json=spec, headers=auth)).json()
        done = await wait_for_job(client, auth, job["id"], timeout_s=20)
    assert done["status"] == "succeeded", done

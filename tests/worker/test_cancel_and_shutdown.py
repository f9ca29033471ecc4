"""Stopping work on purpose: a user's cancel, and a worker's shutdown (graceful, then not)."""

from __future__ import annotations

import httpx

from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job
from tests.worker.support import attempts_of, eventually, get_job, submit


async def _wait_until_called(
    client: httpx.AsyncClient, auth: dict[str, str], job_id: str, target: TargetServer
) -> None:
    await wait_for_job(client, auth, job_id, {"running"}, timeout_s=10)

    async def called() -> bool:
        return target.hits["/slow"] >= 1

    await eventually(called, 10, "the worker called the target")


async def test_cancel_stops_a_running_job_and_the_worker_carries_on(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    hangup_target: TargetServer,
    run_worker: RunWorker,
) -> None:
    async with run_worker():
        job_id = await submit(client, auth, http_job(hangup_target.url("/slow?s=10")))
        await _wait_until_called(client, auth, job_id, hangup_target)

        response = await client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"

        async def attempt_cancelled() -> bool:
            attempts = await attempts_of(client, auth, job_id)
            return [a["outcome"] for a in attempts] == ["cancelled"]

        await eventually(attempt_cancelled, 2.0, "the running attempt was stopped")

        # The worker is still usable, and did not write over the cancel.
        other_id = await submit(client, auth, http_job(hangup_target.url("/ok")))
        other = await wait_for_job(client, auth, other_id)
        assert other["status"] == "succeeded", other
        job = await get_job(client, auth, job_id)

    assert job["status"] == "cancelled"
    assert job["result"] is None
    assert job["attempts"] == 1
    assert job["finished_at"] is not None
    (attempt,) = await attempts_of(client, auth, job_id)
    assert attempt["error_code"] == "cancelled"
    assert attempt["finished_at"] is not None
    assert hangup_target.hits["/slow"] == 1  # cancelled, not retried


async def test_shutdown_past_grace_requeues_the_job_without_using_an_attempt(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    hangup_target: TargetServer,
    run_worker: RunWorker,
) -> None:
    spec = {**http_job(hangup_target.url("/slow?s=5")), "max_attempts": 1}
    async with run_worker(worker_shutdown_grace_s=0.5) as stop:
        job_id = await submit(client, auth, spec)
        await _wait_until_called(client, auth, job_id, hangup_target)
        stop.set()  # the block's exit waits for the worker to stop

    job = await get_job(client, auth, job_id)
    assert job["status"] == "queued", job
    assert job["attempts"] == 0  # refunded
    assert job["error"] is None
    attempts = await attempts_of(client, auth, job_id)
    assert [a["outcome"] for a in attempts] == ["interrupted"]
    assert attempts[0]["finished_at"] is not None

    # With max_attempts=1, only a refunded attempt lets the job run again.
    async with run_worker():
        job = await wait_for_job(client, auth, job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert [a["outcome"] for a in await attempts_of(client, auth, job_id)] == [
        "interrupted",
        "succeeded",
    ]
    assert hangup_target.hits["/slow"] == 2


async def test_shutdown_within_grace_lets_a_short_job_finish(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    hangup_target: TargetServer,
    run_worker: RunWorker,
) -> None:
    async with run_worker(worker_shutdown_grace_s=5.0) as stop:
        job_id = await submit(client, auth, http_job(hangup_target.url("/slow?s=1")))
        await _wait_until_called(client, auth, job_id, hangup_target)
        stop.set()

    # No other worker ran: the stopping one finished the job before it exited.
    job = await get_job(client, auth, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["body"] == "slow"
    assert job["attempts"] == 1
    assert [a["outcome"] for a in await attempts_of(client, auth, job_id)] == ["succeeded"]
    assert hangup_target.hits["/slow"] == 1

"""The retry policy as a user sees it: which failures are retried, how often, and when.

Two levels of retry are in play (worker/retry.py). Inside one attempt, tenacity repeats a
transient failure once at once (two calls in all), unless the server asked for a wait longer
than two seconds; across attempts, the job goes back to `queued` with a backoff. So an attempt
that "failed with a 503" has usually hit the target twice. The settings fixture keeps the
backoffs short (base 0.2 s, cap 1 s).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job
from tests.worker.support import attempts_of, closed_port, submit, when
from worker.retry import with_quick_retries

CALLS_PER_ATTEMPT = 2  # the call and its one quick in-attempt retry


async def test_flaky_target_succeeds_on_a_later_attempt(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        job_id = await submit(client, auth, http_job(target.url("/flaky/twice?fail=2")))
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "succeeded", job
    assert job["result"]["body"] == "recovered"
    assert job["error"] is None
    # Observed: the first attempt made both failing calls (503, quick retry, 503) and was
    # rescheduled; the second attempt's single call succeeded. Three calls, two attempts.
    assert target.hits["/flaky/twice"] == 3
    assert job["attempts"] == 2
    attempts = await attempts_of(client, auth, job_id)
    assert [a["outcome"] for a in attempts] == ["retrying", "succeeded"]
    assert [a["error_code"] for a in attempts] == ["http_503", None]
    assert [a["number"] for a in attempts] == [1, 2]


async def test_a_single_503_is_absorbed_inside_one_attempt(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        job_id = await submit(client, auth, http_job(target.url("/flaky/once?fail=1")))
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "succeeded", job
    assert target.hits["/flaky/once"] == 2  # the 503 and the quick retry that succeeded
    assert job["attempts"] == 1
    assert [a["outcome"] for a in await attempts_of(client, auth, job_id)] == ["succeeded"]


async def test_persistent_500_fails_once_attempts_are_exhausted(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        spec = {**http_job(target.url("/status/500")), "max_attempts": 3}
        job_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "http_500"
    assert job["error"]["retryable"] is True
    assert job["error"]["details"] == {"status": 500}
    assert job["attempts"] == job["max_attempts"] == 3
    assert job["result"] is None
    assert target.hits["/status/500"] == 3 * CALLS_PER_ATTEMPT
    attempts = await attempts_of(client, auth, job_id)
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "failed"]
    assert {a["error_code"] for a in attempts} == {"http_500"}


async def test_404_fails_at_once_without_retry(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        spec = {**http_job(target.url("/status/404")), "max_attempts": 5}
        job_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "http_4xx"
    assert job["error"]["retryable"] is False
    assert job["error"]["details"] == {"status": 404}
    assert job["attempts"] == 1
    assert target.hits["/status/404"] == 1  # not even a quick retry
    attempts = await attempts_of(client, auth, job_id)
    assert [(a["outcome"], a["error_code"]) for a in attempts] == [("failed", "http_4xx")]


async def test_expected_status_makes_a_404_a_success(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        spec = http_job(target.url("/status/404"), expected_status=[404])
        job_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "succeeded", job
    assert job["result"]["status"] == 404
    assert job["result"]["body"] == "status"
    assert job["attempts"] == 1
    assert target.hits["/status/404"] == 1


async def test_429_retry_after_defers_the_next_attempt(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        job_id = await submit(client, auth, http_job(target.url("/retry-after/wait3?s=3")))
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "succeeded", job
    assert job["result"]["body"] == "thanks"
    # Retry-After: 3 is over the 2 s a quick retry may wait, so the attempt ends at once
    # (one call) and the job is deferred; the backoff (0.2 s base) must not undercut 3 s.
    assert target.hits["/retry-after/wait3"] == 2
    first, second = await attempts_of(client, auth, job_id)
    assert (first["outcome"], first["error_code"]) == ("retrying", "http_429")
    assert second["outcome"] == "succeeded"
    gap = (when(second["started_at"]) - when(first["finished_at"])).total_seconds()
    assert gap >= 2.9, f"the next attempt started {gap:.2f} s after a Retry-After of 3 s"


async def test_timeout_is_retried_then_fails_with_code_timeout(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    hangup_target: TargetServer,
    run_worker: RunWorker,
) -> None:
    async with run_worker():
        spec = {**http_job(hangup_target.url("/slow?s=5")), "timeout_s": 0.5, "max_attempts": 2}
        job_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "timeout"
    assert job["error"]["retryable"] is True
    assert job["attempts"] == 2
    attempts = await attempts_of(client, auth, job_id)
    assert [(a["outcome"], a["error_code"]) for a in attempts] == [
        ("retrying", "timeout"),
        ("failed", "timeout"),
    ]
    # One call per attempt: the job's 0.5 s is spent by the first call, so the quick retry
    # must not start a second one past the job's timeout.
    assert hangup_target.hits["/slow"] == 2


async def test_connection_refused_is_a_retryable_connection_error(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with run_worker():
        spec = {**http_job(f"http://127.0.0.1:{closed_port()}/"), "max_attempts": 2}
        job_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "connection_error"
    assert job["error"]["retryable"] is True
    assert job["attempts"] == 2
    attempts = await attempts_of(client, auth, job_id)
    assert [(a["outcome"], a["error_code"]) for a in attempts] == [
        ("retrying", "connection_error"),
        ("failed", "connection_error"),
    ]


async def test_a_cancelled_call_is_not_repeated_by_the_quick_retry() -> None:
    # A cancel (the user's, a shutdown's, the job timeout's) must end the attempt at once.
    calls = 0
    started = asyncio.Event()

    async def call() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(with_quick_retries(call))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    if not done:
        task.cancel()
    assert task in done, "the cancel was swallowed and the call repeated"
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert calls == 1

"""Redis full: a redis-server of the test's own at `maxmemory` with `noeviction` (the policy
compose.yaml runs), which refuses every write that needs memory with an OOM error.

The API refuses new jobs with 503 `queue_full` and `Retry-After` (a job whose row committed
before the queue was found full is answered 202 and enqueued by the reconciler later); a worker
keeps running (its running jobs end and are recorded, events wait, nothing is taken); once
memory frees, every accepted job runs, each exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from shared.settings import Settings
from tests.api.support import api_client, assert_error
from tests.conftest import RunWorker
from tests.faults.redis_server import RedisServer
from tests.helpers import TargetServer, http_job, wait_for_job

FILLER = b"x" * 32_768


@pytest.fixture
async def small_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    await server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@contextlib.asynccontextmanager
async def never_answers() -> AsyncIterator[str]:
    """A loopback HTTP address that accepts connections and never answers: a job's request
    there times out."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class LogRecorder:
    """A logger's stand-in that records the events logged through it, and logs them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.events: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(event: str, *args: Any, **kwargs: Any) -> Any:
            self.events.append(event)
            return method(event, *args, **kwargs)

        return call


class Filler:
    """Filler keys: `fill` writes them until Redis refuses one; `keep_full` tops Redis up
    whenever what the worker deletes (finished jobs' keys) makes room again, so Redis stays
    full until `empty`."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.count = 0

    async def fill(self) -> int:
        # Big values first, then ever smaller ones: room of a few KB (a finished job's keys
        # deleted) is taken too, or a submission (under 1 KB) would still fit in it.
        for size in (len(FILLER), 1024, 64):
            with contextlib.suppress(OutOfMemoryError):
                while True:
                    await self.redis.set(f"filler:{self.count}", FILLER[:size])
                    self.count += 1
        return self.count

    async def keep_full(self) -> None:
        while True:
            await self.fill()
            await asyncio.sleep(0.01)

    async def empty(self) -> None:
        await self.redis.delete(*[f"filler:{i}" for i in range(self.count)])


async def submit(client: httpx.AsyncClient, auth: dict[str, str], spec: Any) -> httpx.Response:
    return await client.post("/v1/jobs", json=spec, headers=auth)


async def test_redis_full_refuses_new_jobs_and_loses_none(
    settings: Settings,
    small_redis: RedisServer,
    run_worker: RunWorker,
    target: TargetServer,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import worker.main

    worker_log = LogRecorder(worker.main.log)
    monkeypatch.setattr(worker.main, "log", worker_log)
    private = {"redis_url": small_redis.url}
    redis = Redis.from_url(small_redis.url)
    accepted: list[str] = []
    async with (
        api_client(settings, **private) as client,
        run_worker(concurrency=10, **private),
        never_answers() as hanging,
    ):
        # Running when Redis fills up: jobs that succeed, and jobs whose attempt fails and
        # must go round again (arq's write of the new score is refused).
        for i in range(4):
            answer = await submit(client, auth, http_job(target.url(f"/slow?s=2&n={i}")))
            accepted.append(answer.json()["id"])
        for i in range(2):
            hang_input = {"url": f"{hanging}/t{i}", "timeout_s": 1}
            spec = {"kind": "http", "max_attempts": 2, "input": hang_input}
            answer = await submit(client, auth, spec)
            accepted.append(answer.json()["id"])
        for job_id in accepted:
            await wait_for_job(client, auth, job_id, {"running"})

        filler = Filler(redis)
        assert await filler.fill() > 0
        topping_up = asyncio.create_task(filler.keep_full())

        # The first job to meet the full Redis committed before the queue was found full:
        # accepted (202), enqueued later. Every later one is refused, nothing written.
        first = await submit(client, auth, http_job(target.url("/ok?first")))
        assert first.status_code == 202, first.text
        accepted.append(first.json()["id"])
        for _ in range(3):
            refused = await submit(client, auth, http_job(target.url("/ok?refused")))
            assert_error(refused, 503, "queue_full")
            assert int(refused.headers["Retry-After"]) > 0
        batch = await client.post(
            "/v1/jobs/batch",
            json={"jobs": [http_job(target.url("/ok?refused-batch"))] * 3},
            headers=auth,
        )
        assert_error(batch, 503, "queue_full")

        # While Redis is full the worker keeps going: the running jobs end, recorded in the
        # database (their events wait in the worker).
        for job_id in accepted[:4]:
            job = await wait_for_job(client, auth, job_id, {"succeeded", "failed"})
            assert job["status"] == "succeeded", job
        for job_id in accepted[4:6]:  # timed out, and back in the queue for a second attempt
            job = await wait_for_job(client, auth, job_id, {"queued", "failed"})
            assert (job["status"], job["attempts"]) == ("queued", 1), job
        with pytest.raises(OutOfMemoryError):
            await redis.set("still-full", FILLER)

        # Memory frees: everything accepted runs, and new jobs are taken again.
        topping_up.cancel()
        await asyncio.gather(topping_up, return_exceptions=True)
        await filler.empty()
        later = await _submit_when_room(client, auth, http_job(target.url("/ok?later")))
        accepted.append(later)
        jobs = {
            job_id: await wait_for_job(client, auth, job_id, timeout_s=60) for job_id in accepted
        }

        listed = await client.get("/v1/jobs", params={"limit": 500}, headers=auth)
        assert {job["id"] for job in listed.json()["items"]} == set(accepted)
        for job_id, job in jobs.items():
            attempts = await client.get(f"/v1/jobs/{job_id}/attempts", headers=auth)
            outcomes = [a["outcome"] for a in attempts.json()["items"]]
            if job_id in accepted[4:6]:  # timed out twice: both attempts ran, no third
                assert job["status"] == "failed", job
                assert len(outcomes) == 2, outcomes
            else:
                assert job["status"] == "succeeded", job
                assert outcomes == ["succeeded"], outcomes
    await redis.aclose()
    # The worker never restarted its poll loop: Redis refusals are not failures of it.
    assert "worker.poll_loop_restarting" not in worker_log.events
    # Each accepted job ran once; no refused one ever ran.
    assert target.hits["/slow"] == 4
    assert target.hits["/ok"] == 2


async def _submit_when_room(
    client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any]
) -> str:
    """Submit, waiting out `queue_full` (the API probes Redis at most once a second)."""
    for _ in range(100):
        answer = await submit(client, auth, spec)
        if answer.status_code == 202:
            return str(answer.json()["id"])
        assert_error(answer, 503, "queue_full")
        await asyncio.sleep(0.1)
    raise AssertionError("the API still refuses jobs after Redis has room")

"""Several API processes on one database and Redis: `outrider api --workers 2` (A: two uvicorn
processes, each with its own pools, its own group commit and its own revocation watch) and a
second `outrider api` (B), with a worker process.

- Submissions to both, singles (the group commit) and batches at once, each land exactly once.
- A key revoked while both have it cached (OUTRIDER_AUTH_CACHE_S is long here) is refused by
  every process at once: `outrider keys revoke` tells them over Redis.
- An event stream on B sees the events of a job submitted on A.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psutil

from outrider.dev import free_port
from tests.e2e.cluster import Cluster, bearer, list_all_jobs, wait_all_terminal
from tests.e2e.conftest import StartCluster
from tests.helpers import TargetServer, http_job

SINGLES = 40
BATCH = 25


async def _start_second_api(cluster: Cluster) -> str:
    port = free_port()
    cluster.start("api-b", "api", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        for _ in range(600):
            assert cluster.procs["api-b"].poll() is None, cluster.logs("api-b")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return url
            await asyncio.sleep(0.1)
    raise AssertionError(f"API B not ready:\n{cluster.logs('api-b')}")


def _uvicorn_children(proc: Any) -> int:
    children = psutil.Process(proc.pid).children()
    return sum("multiprocessing" in " ".join(child.cmdline()) for child in children) - sum(
        "resource_tracker" in " ".join(child.cmdline()) for child in children
    )


@contextlib.asynccontextmanager
async def _events(url: str, headers: dict[str, str]) -> AsyncIterator[list[dict[str, Any]]]:
    """Follow `GET /v1/events` in the background; yields the list the events go into."""
    seen: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def follow() -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=None) as client,
            client.stream("GET", "/v1/events", headers=headers) as response,
        ):
            assert response.status_code == 200
            connected.set()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))

    task = asyncio.create_task(follow())
    done, _ = await asyncio.wait({task, asyncio.create_task(connected.wait())}, timeout=30)
    if task in done:
        task.result()
    assert connected.is_set(), "the event stream did not open"
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_two_api_processes_share_submissions_revocations_and_events(
    start_cluster: StartCluster, target: TargetServer
) -> None:
    cluster = await start_cluster(workers=0, env={"OUTRIDER_AUTH_CACHE_S": "300"})
    # Restart A as `outrider api --workers 2` on the same port.
    first = cluster.procs.pop("api")
    first.terminate()
    first.wait(15)
    cluster.start(
        "api-a", "api", "--host", "127.0.0.1", "--port", str(cluster.api_port), "--workers", "2"
    )
    await cluster.wait_ready()
    url_b = await _start_second_api(cluster)
    cluster.start_worker(20)
    await cluster.wait_workers()
    assert _uvicorn_children(cluster.procs["api-a"]) == 2

    auth = bearer(await cluster.create_key("processes"))
    async with (
        httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as a,
        httpx.AsyncClient(base_url=url_b, timeout=30) as b,
        _events(url_b, auth) as seen_on_b,
    ):
        # Singles and a batch on each process, all at once.
        calls = []
        for name, client in (("a", a), ("b", b)):
            calls += [
                client.post("/v1/jobs", json=http_job(target.url(f"/ok?{name}{i}")), headers=auth)
                for i in range(SINGLES)
            ]
            batch = [http_job(target.url(f"/json?{name}{i}")) for i in range(BATCH)]
            calls.append(client.post("/v1/jobs/batch", json={"jobs": batch}, headers=auth))
        answers = await asyncio.gather(*calls)
        assert all(answer.status_code == 202 for answer in answers), [a.text for a in answers]
        ids: list[str] = []
        for answer in answers:
            body = answer.json()
            ids += [job["id"] for job in body["jobs"]] if "jobs" in body else [body["id"]]
        assert len(ids) == len(set(ids)) == 2 * (SINGLES + BATCH)
        jobs = await wait_all_terminal(a, auth, ids, timeout_s=120)
        assert {job["status"] for job in jobs.values()} == {"succeeded"}
        assert set(await list_all_jobs(b, auth)) == set(ids)  # nothing else, nothing twice
        assert target.hits["/ok"] == 2 * SINGLES
        assert target.hits["/json"] == 2 * BATCH

        # B's stream saw every job that A accepted, from `queued` to `succeeded`.
        from_a = set(ids[: SINGLES + BATCH])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ended = {e["job_id"] for e in seen_on_b if e["type"] == "succeeded"}
            if from_a <= ended:
                break
            await asyncio.sleep(0.1)
        assert from_a <= ended, len(from_a - ended)
        queued = {e["job_id"] for e in seen_on_b if e["type"] == "queued"}
        assert from_a <= queued

        # Revocation: every process remembers the key (cache of 300 s), yet refuses it at once.
        key = auth["Authorization"].removeprefix("Bearer ")
        for client in (a, b, a, a, a):
            assert (await client.get("/v1/jobs", params={"limit": 1}, headers=auth)).is_success
        code, _, err = await cluster.cli("keys", "revoke", key)
        assert code == 0, err
        assert "Redis was unreachable" not in err
        refused: list[int] = []
        deadline = time.monotonic() + 5  # told over Redis: at once, not after the cache's 300 s
        while time.monotonic() < deadline:
            refused = [
                (await client.get("/v1/jobs", params={"limit": 1}, headers=auth)).status_code
                for client in (a, b, a, b, a, b, a, b)
            ]
            if set(refused) == {401}:
                break
            await asyncio.sleep(0.05)
        assert set(refused) == {401}, refused

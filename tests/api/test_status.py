"""GET /v1/queue and GET /v1/workers: what they say is what the job table and Redis hold."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import __version__
from shared.liveness import live_workers, publish_liveness
from shared.models import Job, JobStatus, utcnow
from tests.conftest import RunWorker
from tests.helpers import TargetServer


async def database_counts(
    sessionmaker: async_sessionmaker[AsyncSession], queue: str
) -> dict[str, int]:
    now = utcnow()
    async with sessionmaker() as session:
        queued = (Job.queue == queue) & (Job.status == JobStatus.QUEUED)
        ready = await session.scalar(select(func.count()).where(queued, Job.run_after <= now))
        deferred = await session.scalar(select(func.count()).where(queued, Job.run_after > now))
        running = await session.scalar(
            select(func.count()).where(Job.queue == queue, Job.status == JobStatus.RUNNING)
        )
        recent: dict[str, int] = {}
        for status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            recent[status.value] = await session.scalar(  # type: ignore[assignment]
                select(func.count()).where(
                    Job.queue == queue,
                    Job.status == status,
                    Job.finished_at >= now - timedelta(minutes=1),
                )
            )
    return {"ready": ready or 0, "deferred": deferred or 0, "running": running or 0, **recent}


async def queue_view(client: httpx.AsyncClient, auth: dict[str, str], name: str) -> Any:
    response = await client.get("/v1/queue", headers=auth)
    assert response.status_code == 200, response.text
    return next(q for q in response.json()["queues"] if q["name"] == name)


async def test_the_queue_view_agrees_with_the_database(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
) -> None:
    jobs: list[dict[str, Any]] = [
        {"kind": "http", "input": {"url": target.url("/ok")}} for _ in range(30)
    ]
    jobs += [
        {"kind": "http", "input": {"url": target.url("/status/404")}, "max_attempts": 1}
        for _ in range(5)
    ]
    response = await client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=auth)
    ids = [uuid.UUID(job["id"]) for job in response.json()["jobs"]]
    async with sessionmaker.begin() as session:  # five of them wait for a later time
        await session.execute(
            update(Job).where(Job.id.in_(ids[:5])).values(run_after=utcnow() + timedelta(hours=1))
        )
    await asyncio.sleep(0.05)

    view = await queue_view(client, auth, "default")
    expected = await database_counts(sessionmaker, "default")
    assert (view["ready"], view["deferred"], view["running"]) == (
        expected["ready"],
        expected["deferred"],
        expected["running"],
    )
    assert view["ready"] >= 30
    assert view["deferred"] >= 5
    assert view["oldest_ready_age_s"] is not None
    assert view["oldest_ready_age_s"] >= 0.05
    assert view["in_redis"] >= 35

    async with run_worker(concurrency=10):
        for _ in range(200):
            view = await queue_view(client, auth, "default")
            if view["ready"] == 0 and view["running"] == 0:
                break
            await asyncio.sleep(0.1)
        assert view["workers"] >= 1
    expected = await database_counts(sessionmaker, "default")
    view = await queue_view(client, auth, "default")
    assert (view["ready"], view["running"], view["deferred"]) == (0, 0, expected["deferred"])
    assert view["completed"]["1m"] == expected["succeeded"]
    assert expected["succeeded"] >= 25
    assert view["failed"]["1m"] == expected["failed"]
    assert expected["failed"] >= 5
    assert view["completed"]["5m"] >= view["completed"]["1m"]
    assert view["completed"]["60m"] >= view["completed"]["5m"]
    assert view["throughput_per_s"] > 0

    browser = await queue_view(client, auth, "browser")  # known queues are always listed
    assert browser["ready"] >= 0
    assert set(browser["completed"]) == {"1m", "5m", "60m"}
    async with sessionmaker.begin() as session:
        await session.execute(update(Job).where(Job.id.in_(ids[:5])).values(status="cancelled"))


async def test_workers_list_themselves_and_leave_when_they_stop(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with run_worker(concurrency=7):
        for _ in range(50):
            response = await client.get("/v1/workers", headers=auth)
            mine = [w for w in response.json()["workers"] if w["pid"] == os.getpid()]
            if mine:
                break
            await asyncio.sleep(0.1)
        (worker,) = mine
        assert worker["queue"] == "default"
        assert worker["concurrency"] == 7
        assert worker["version"] == __version__
        assert worker["host"]
        assert worker["id"].startswith(f"{worker['host']}:{os.getpid()}:")
        assert worker["jobs_running"] == 0
        assert worker["jobs_done"] >= 0
        assert worker["started_at"] <= worker["last_heartbeat"]
    # A graceful stop removes its own entry at once, and only its own.
    response = await client.get("/v1/workers", headers=auth)
    assert worker["id"] not in {w["id"] for w in response.json()["workers"]}


async def test_a_worker_that_stops_heartbeating_disappears(
    client: httpx.AsyncClient, auth: dict[str, str], redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    try:
        info = {
            "worker_id": "ghost-host:4242:abcdef",
            "host": "ghost-host",
            "pid": 4242,
            "queue": "default",
            "concurrency": 3,
            "running": 0,
            "started_at": utcnow().isoformat(),
            "heartbeat_at": utcnow().isoformat(),
        }
        await publish_liveness(redis, info, ttl_s=2)
        response = await client.get("/v1/workers", headers=auth)
        assert "ghost-host:4242:abcdef" in {w["id"] for w in response.json()["workers"]}
        await asyncio.sleep(2.2)
        response = await client.get("/v1/workers", headers=auth)
        assert "ghost-host:4242:abcdef" not in {w["id"] for w in response.json()["workers"]}
        assert all(w["worker_id"] != info["worker_id"] for w in await live_workers(redis))
    finally:
        await redis.aclose()


async def test_status_needs_a_key(client: httpx.AsyncClient) -> None:
    for path in ("/v1/queue", "/v1/workers"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

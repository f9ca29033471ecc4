"""An agent's `max_concurrency`: across workers, never more of its jobs running at once; the
rest wait queued (no attempt used) and run as slots free; a dead worker's slot frees itself."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import httpx
from redis.asyncio import Redis

from shared.queue import AGENT_LIMITS_KEY, agent_running_key
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import http_job, wait_for_job
from tests.worker.support import attempts_of
from tests.worker.test_politeness import UNLIMITED, create_agent, stamped_server, submit_batch


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The largest number of the spans that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


async def _spans(
    client: httpx.AsyncClient, auth: dict[str, str], ids: list[str]
) -> list[tuple[datetime, datetime]]:
    spans = []
    for job_id in ids:
        for attempt in await attempts_of(client, auth, job_id):
            assert attempt["outcome"] == "succeeded", attempt
            spans.append(
                (
                    datetime.fromisoformat(attempt["started_at"]),
                    datetime.fromisoformat(attempt["finished_at"]),
                )
            )
    return spans


async def test_an_agents_max_concurrency_holds_across_two_workers(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    capped = await create_agent(client, auth, max_concurrency=2)
    other = await create_agent(client, auth)
    shown = (await client.get(f"/v1/agents/{capped}", headers=auth)).json()
    async with stamped_server() as site:
        specs: list[dict[str, Any]] = [
            {**http_job(site.url(f"/slow?n={n}")), "agent_id": capped} for n in range(12)
        ]
        free = [{**http_job(site.url(f"/ok?free={n}")), "agent_id": other} for n in range(4)]
        async with run_worker(concurrency=5, **UNLIMITED), run_worker(concurrency=5, **UNLIMITED):
            ids = await submit_batch(client, auth, specs)
            free_ids = await submit_batch(client, auth, free)
            free_jobs = [await wait_for_job(client, auth, i, timeout_s=30) for i in free_ids]
            jobs = [await wait_for_job(client, auth, i, timeout_s=60) for i in ids]

    assert shown["max_concurrency"] == 2
    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 12
    # Each job ran once (waiting for a slot is not an attempt), never more than 2 at once...
    spans = await _spans(client, auth, ids)
    assert len(spans) == 12
    assert _most_at_once(spans) == 2, spans
    assert site.max_in_flight == 2
    # ...and another agent's jobs were not held up behind them.
    assert [job["status"] for job in free_jobs] == ["succeeded"] * 4
    first_free_end = min(job["finished_at"] for job in free_jobs)
    assert first_free_end < max(job["started_at"] for job in jobs)


async def test_a_limit_changes_and_clears_and_the_reconciler_restores_it(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, run_worker: RunWorker
) -> None:
    redis = Redis.from_url(settings.resolved_redis_url)
    try:
        agent_id = await create_agent(client, auth, max_concurrency=3)
        assert await redis.hget(AGENT_LIMITS_KEY, agent_id) == b"3"
        patched = await client.patch(
            f"/v1/agents/{agent_id}", json={"max_concurrency": 1}, headers=auth
        )
        assert patched.json()["max_concurrency"] == 1
        assert await redis.hget(AGENT_LIMITS_KEY, agent_id) == b"1"
        bad = await client.patch(
            f"/v1/agents/{agent_id}", json={"max_concurrency": 0}, headers=auth
        )
        assert bad.status_code == 422
        # Lost from Redis (a flush, or a change made while Redis was away): restored.
        await redis.hdel(AGENT_LIMITS_KEY, agent_id)
        async with run_worker():
            for _ in range(100):
                if await redis.hget(AGENT_LIMITS_KEY, agent_id) == b"1":
                    break
                await asyncio.sleep(0.1)
        assert await redis.hget(AGENT_LIMITS_KEY, agent_id) == b"1"
        cleared = await client.patch(
            f"/v1/agents/{agent_id}", json={"max_concurrency": None}, headers=auth
        )
        assert cleared.json()["max_concurrency"] is None
        assert await redis.hget(AGENT_LIMITS_KEY, agent_id) is None
    finally:
        await redis.aclose()


async def test_a_dead_workers_lease_expires_and_the_job_runs(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings, run_worker: RunWorker
) -> None:
    agent_id = await create_agent(client, auth, max_concurrency=1)
    redis = Redis.from_url(settings.resolved_redis_url)
    running = agent_running_key(agent_id)
    try:
        # A lease left by a worker that died (never renewed, never released): 1.5 s to live.
        seconds, micros = await redis.time()
        await redis.zadd(running, {f"{uuid.uuid4()}:1": seconds * 1000 + micros // 1000 + 1500})
        async with stamped_server() as site, run_worker(**UNLIMITED):
            (job_id,) = await submit_batch(
                client, auth, [{**http_job(site.url("/ok?late=1")), "agent_id": agent_id}]
            )
            await asyncio.sleep(0.5)
            held = (await client.get(f"/v1/jobs/{job_id}", headers=auth)).json()
            done = await wait_for_job(client, auth, job_id, timeout_s=20)
        assert held["status"] == "queued", held
        assert held["attempts"] == 0
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1
        assert await redis.zcard(running) == 0  # the job's own lease was given back
    finally:
        await redis.aclose()

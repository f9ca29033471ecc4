"""Two real workers busy on a backlog: GET /v1/queue and `outrider queue` agree with the
database while jobs move, and a SIGKILLed worker leaves /v1/workers within seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job, JobStatus, utcnow
from tests.e2e.cluster import Cluster, bearer
from tests.e2e.conftest import StartCluster
from tests.helpers import TargetServer, http_job

pytestmark = pytest.mark.e2e

JOBS = 600
FIELDS = ("ready", "deferred", "running")


async def database_view(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """The default queue from the job table: live counts, and everything the view accounts for
    (live jobs plus those that ended in the last hour), which no job's progress changes."""
    now = utcnow()
    live = (Job.queue == "default") & Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
    ended = (
        (Job.queue == "default")
        & Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED])
        & (Job.finished_at >= now - timedelta(minutes=60))
    )
    async with sessionmaker() as session:
        total = await session.scalar(select(func.count()).where(live | ended))
        queued = live & (Job.status == JobStatus.QUEUED)
        view = {
            "ready": await session.scalar(select(func.count()).where(queued, Job.run_after <= now)),
            "deferred": await session.scalar(
                select(func.count()).where(queued, Job.run_after > now)
            ),
            "running": await session.scalar(
                select(func.count()).where(live, Job.status == JobStatus.RUNNING)
            ),
        }
    return {**{k: v or 0 for k, v in view.items()}, "accounted": total or 0}


def accounted(queue: dict[str, Any]) -> int:
    return int(
        queue["ready"] + queue["deferred"] + queue["running"]
        + queue["completed"]["60m"] + queue["failed"]["60m"]
    )  # fmt: skip


async def api_view(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/v1/queue", headers=headers)
    assert response.status_code == 200, response.text
    return next(q for q in response.json()["queues"] if q["name"] == "default")


async def cli_view(cluster: Cluster) -> dict[str, int]:
    code, out, err = await cluster.cli("queue")
    assert code == 0, err
    cells = next(line.split() for line in out.splitlines() if line.startswith("default "))
    done = [int(n) for n in cells[5].split("/")]
    failed = [int(n) for n in cells[6].split("/")]
    view = {"ready": int(cells[1]), "deferred": int(cells[2]), "running": int(cells[3])}
    return {**view, "accounted": sum(view.values()) + done[2] + failed[2]}


async def test_the_queue_view_and_cli_agree_with_the_database_under_load(
    start_cluster: StartCluster,
    target: TargetServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    cluster = await start_cluster(workers=2, concurrency=10)
    live = await cluster.wait_workers()
    headers = bearer(await cluster.create_key(f"obs-{uuid.uuid4().hex[:8]}"))
    spec = http_job(target.url("/slow?s=0.05"))
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as client:
        before = await database_view(sessionmaker)
        for _ in range(JOBS // 200):
            batch = {"jobs": [spec] * 200}
            response = await client.post("/v1/jobs/batch", json=batch, headers=headers)
            assert response.status_code == 202, response.text[:300]

        # While the workers are busy, jobs move between reads; what every view accounts for
        # (live plus ended in the last hour) does not.
        expected_total = before["accounted"] + JOBS
        busy_seen = False
        for _ in range(3):
            api, cli, db = await api_view(client, headers), await cli_view(cluster), None
            db = await database_view(sessionmaker)
            busy_seen |= api["running"] > 0
            assert accounted(api) == cli["accounted"] == db["accounted"] == expected_total
        assert busy_seen, "the workers should have been busy"

        # SIGKILL one worker: it leaves the worker list within seconds (3 heartbeats).
        victim_pid, victim_id = next(iter(live.items()))
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while True:
            response = await client.get("/v1/workers", headers=headers)
            ids = {w["id"] for w in response.json()["workers"]}
            if victim_id not in ids:
                break
            assert time.monotonic() - killed_at < 30, "a dead worker stayed listed for 30 s"
            await asyncio.sleep(0.1)
        gone_after_s = time.monotonic() - killed_at
        assert set(live.values()) - {victim_id} <= ids  # the survivor is still listed

        # Quiet again (the reconciler hands the dead worker's jobs to the survivor): every
        # number is exactly the database's.
        deadline = time.monotonic() + 120
        while True:
            api = await api_view(client, headers)
            if api["ready"] == api["running"] == 0:
                break
            assert time.monotonic() < deadline, api
            await asyncio.sleep(0.5)
        db, cli = await database_view(sessionmaker), await cli_view(cluster)
        assert {k: api[k] for k in FIELDS} == {k: db[k] for k in FIELDS}
        assert {k: cli[k] for k in FIELDS} == {k: db[k] for k in FIELDS}
        assert accounted(api) == cli["accounted"] == db["accounted"] == expected_total
    print(f"dead worker left /v1/workers after {gone_after_s:.1f} s")

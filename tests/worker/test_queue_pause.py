"""Pausing a queue: workers take none of its jobs, submissions still queue, resume runs them."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.repositories.owner import create_api_key, get_or_create_owner
from shared.settings import Settings
from tests.api.support import api_client
from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job


async def _owner_key(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> dict[str, str]:
    async with sessionmaker.begin() as session:
        owner = await get_or_create_owner(session, name)
        _, key = await create_api_key(session, owner)
    return {"Authorization": f"Bearer {key}"}


async def _queue(client: httpx.AsyncClient, auth: dict[str, str], name: str) -> dict[str, object]:
    queues = (await client.get("/v1/queue", headers=auth)).json()["queues"]
    found: dict[str, object] = next(q for q in queues if q["name"] == name)
    return found


async def test_a_paused_queue_holds_its_jobs_until_resumed(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    target: TargetServer,
) -> None:
    admin_name = f"admin-{uuid.uuid4().hex[:8]}"
    admin = await _owner_key(sessionmaker, admin_name)
    tenant = await _owner_key(sessionmaker, f"tenant-{uuid.uuid4().hex[:8]}")
    async with api_client(settings, admin_owners=[admin_name]) as client:
        refused = await client.post("/v1/queues/default/pause", headers=tenant)
        unknown = await client.post("/v1/queues/nope/pause", headers=admin)
        paused = await client.post("/v1/queues/default/pause", headers=admin)
        try:
            assert (await _queue(client, tenant, "default"))["paused"] is True
            async with run_worker():
                submitted = await client.post(
                    "/v1/jobs", json=http_job(target.url("/json?paused=1")), headers=tenant
                )
                job_id = submitted.json()["id"]
                await asyncio.sleep(2.0)  # many polls of a live worker: it must take nothing
                held = (await client.get(f"/v1/jobs/{job_id}", headers=tenant)).json()
                resumed = await client.post("/v1/queues/default/resume", headers=admin)
                done = await wait_for_job(client, tenant, job_id, timeout_s=20)
        finally:
            await client.post("/v1/queues/default/resume", headers=admin)

    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    assert unknown.status_code == 422, unknown.text
    assert paused.json() == {"name": "default", "paused": True}
    assert submitted.status_code == 202, submitted.text
    assert held["status"] == "queued", held
    assert held["attempts"] == 0
    assert resumed.json() == {"name": "default", "paused": False}
    assert done["status"] == "succeeded", done


@pytest.mark.usefixtures("redis_url")
async def test_the_pause_is_shown_by_the_cli(settings: Settings) -> None:
    from outrider.inspect import pause_queue, render_queue

    await pause_queue(settings, "browser", True)
    try:
        shown = await render_queue(settings)
    finally:
        await pause_queue(settings, "browser", False)
    browser_line = next(line for line in shown.splitlines() if line.startswith("browser"))
    assert browser_line.rstrip().endswith("paused")
    assert (await render_queue(settings)).splitlines()[-1].rstrip().endswith("active")

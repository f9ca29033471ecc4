"""Outrider through a real PgBouncer in transaction pooling mode: migrations, the API and a
worker, with more clients than server connections, so transactions of the API, the worker's
job store and its background loops interleave on the same few server connections.

asyncpg's prepared statements are the trap (a statement prepared on one server connection is
unknown on the next, and asyncpg's numbered names collide between clients):
OUTRIDER_DATABASE_PGBOUNCER=1 turns them off (shared/db.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import create_engine, create_sessionmaker
from shared.models import Schedule, utcnow
from shared.settings import Settings
from tests.api.support import api_client
from tests.conftest import TEST_DATABASE_URL, RunWorker
from tests.crawl_site import serve_site
from tests.e2e.cluster import process_env
from tests.e2e.pgbouncer import PgBouncer, pgbouncer_binary
from tests.e2e.processes import outrider_command, run_command
from tests.helpers import TargetServer, http_job, wait_for_job

pytestmark = pytest.mark.postgres

SERVER_CONNECTIONS = 3


async def _admin(sql: str) -> None:
    url = make_url(TEST_DATABASE_URL).set(database="postgres")
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.exec_driver_sql(sql)
    await engine.dispose()


@pytest.fixture
async def bouncer(tmp_path: Path) -> AsyncIterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed: apt-get install pgbouncer (make install)")
    bouncer = PgBouncer(tmp_path, TEST_DATABASE_URL, pool_size=SERVER_CONNECTIONS)
    await bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
async def pooled_url(bouncer: PgBouncer, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database, migrated by `outrider migrate` through PgBouncer; its URL through it."""
    name = f"outrider_pgb_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        url = bouncer.url(name)
        env = process_env(tmp_path / "data", url, None, OUTRIDER_DATABASE_PGBOUNCER="1")
        code, out, err = await run_command([*outrider_command(), "migrate"], env, tmp_path)
        assert code == 0, f"{out}\n{err}\n{bouncer.log}"
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _new_key(settings: Settings) -> dict[str, str]:
    from shared.repositories.owner import create_api_key, get_or_create_owner

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            owner = await get_or_create_owner(session, f"pgb-{uuid.uuid4().hex[:8]}")
            _, key = await create_api_key(session, owner)
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {key}"}


async def _list_all(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    """Every job of the owner, seven at a time (the cursor walks many pages)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 7}
    while True:
        response = await client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        if not body["next_cursor"]:
            return items
        params["cursor"] = body["next_cursor"]


async def test_api_and_worker_through_pgbouncer_in_transaction_mode(
    settings: Settings,
    pooled_url: str,
    bouncer: PgBouncer,
    run_worker: RunWorker,
    target: TargetServer,
) -> None:
    pooled = {
        "database_url": pooled_url,
        "database_pgbouncer": True,
        "db_pool_size": 8,  # more client connections than PgBouncer's 3 server connections
        "db_max_overflow": 4,
        # Every job calls one loopback host: no per-host pacing (tests/worker covers it).
        "host_rate_per_s": 0,
        "host_concurrency": 0,
    }
    pooled_settings = settings.model_copy(update=pooled)
    auth = await _new_key(pooled_settings)
    async with (
        api_client(settings, **pooled) as client,
        run_worker(concurrency=12, **pooled),
        serve_site(pages=12) as site,
    ):
        # Single submissions (the group commit) and a batch, concurrently.
        singles = [
            client.post("/v1/jobs", json=http_job(target.url(f"/ok?n={i}")), headers=auth)
            for i in range(30)
        ]
        batch = client.post(
            "/v1/jobs/batch",
            json={"jobs": [http_job(target.url(f"/json?b={i}")) for i in range(20)]},
            headers=auth,
        )
        fetch = client.post(
            "/v1/jobs",
            json={"kind": "fetch", "input": {"url": target.url("/ok?fetch")}},
            headers=auth,
        )
        crawl_input = {"url": site.url("/"), "max_depth": 3, "sitemap": "skip"}
        crawl = client.post("/v1/jobs", json={"kind": "crawl", "input": crawl_input}, headers=auth)
        answers = await asyncio.gather(*singles, batch, fetch, crawl)
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        ids = [a.json()["id"] for a in answers[:30]] + [j["id"] for j in answers[30].json()["jobs"]]
        ids += [answers[31].json()["id"], answers[32].json()["id"]]

        # A running job cancelled (the worker's cancel watch stops it).
        slow = await client.post("/v1/jobs", json=http_job(target.url("/slow?s=30")), headers=auth)
        assert slow.status_code == 202, slow.text
        slow_id = slow.json()["id"]
        await wait_for_job(client, auth, slow_id, {"running"})
        cancelled = await client.post(f"/v1/jobs/{slow_id}/cancel", headers=auth)
        assert cancelled.status_code == 200, cancelled.text

        # A schedule: fired now through the API, and due in the worker's scheduler.
        created = await client.post(
            "/v1/schedules",
            json={"cron": "* * * * *", "job": http_job(target.url("/status/200"))},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        schedule_id = created.json()["id"]
        fired = await client.post(f"/v1/schedules/{schedule_id}/run", headers=auth)
        assert fired.status_code == 202, fired.text
        engine = create_engine(pooled_settings)
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(
                update(Schedule)
                .where(Schedule.id == uuid.UUID(schedule_id))
                .values(next_fire_at=utcnow() - timedelta(seconds=1))
            )
        await engine.dispose()

        for job_id in [*ids, fired.json()["id"]]:
            job = await wait_for_job(client, auth, job_id, timeout_s=90)
            assert job["status"] == "succeeded", job
        job = await wait_for_job(client, auth, slow_id)
        assert job["status"] == "cancelled", job
        for _ in range(200):
            runs = await client.get(f"/v1/schedules/{schedule_id}/runs", headers=auth)
            assert runs.status_code == 200, runs.text
            triggers = {run["trigger"] for run in runs.json()["items"]}
            if len(triggers) == 2:
                break
            await asyncio.sleep(0.1)
        assert triggers == {"manual", "schedule"}, runs.json()
        for run in runs.json()["items"]:
            await wait_for_job(client, auth, run["job_id"], {"succeeded"}, timeout_s=30)

        listed = await _list_all(client, auth)
        listed_ids = [job["id"] for job in listed]
        assert len(listed_ids) == len(set(listed_ids)), "a job listed twice across pages"
        assert set(ids) | {slow_id} <= set(listed_ids)

    # Each job ran exactly once (the schedule's jobs call /status/200: it may fire again).
    assert target.hits["/ok"] == 31
    assert target.hits["/json"] == 20
    assert target.hits["/slow"] == 1
    assert bouncer.proc is not None
    assert bouncer.proc.poll() is None, bouncer.log

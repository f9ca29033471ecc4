"""Bursts of submissions: every answer is 202, 503 with Retry-After, or 4xx; never a 500, and
other owners' requests are not stalled behind the burst. On the suite's database (PostgreSQL in
CI) and on a SQLite file of its own (what `make run` uses)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrations import apply as migrate
from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings
from tests.api.support import api_client, closed_port_url
from tests.helpers import http_job

SUBMITS = 300
READS = 60
# A request stuck behind an exhausted pool waits for the pool's timeout (30 s by default);
# this bound only tells a stall from a slow machine, it is not a performance target.
STALL_S = 10.0


@pytest.fixture(params=["suite", "sqlite"])
def burst_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    if request.param == "suite":
        return settings
    url = f"sqlite+aiosqlite:///{tmp_path / 'burst.db'}"
    migrate.upgrade(url)
    return settings.model_copy(update={"database_url": url, "data_dir": tmp_path})


async def _owner(settings: Settings, name: str) -> dict[str, str]:
    from shared.repositories.owner import create_api_key, get_or_create_owner

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            owner = await get_or_create_owner(session, f"{name}-{uuid.uuid4().hex[:8]}")
            _, key = await create_api_key(session, owner)
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def api(burst_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # The key cache off: every request authenticates against the database, the worst case.
    async with api_client(burst_settings, auth_cache_s=0) as client:
        yield client


async def _submit(
    client: httpx.AsyncClient, auth: dict[str, str], n: int, agent_id: str
) -> httpx.Response:
    spec: dict[str, Any] = http_job(closed_port_url(f"/burst/{n}"))
    headers = dict(auth)
    if n % 3 == 1:
        spec["agent_id"] = agent_id
    elif n % 3 == 2:
        headers["Idempotency-Key"] = f"burst-{n}"
    if n % 50 == 0:
        return await client.post("/v1/jobs/batch", json={"jobs": [spec] * 5}, headers=auth)
    return await client.post("/v1/jobs", json=spec, headers=headers)


async def _timed_read(client: httpx.AsyncClient, auth: dict[str, str], path: str) -> float:
    started = time.monotonic()
    response = await client.get(path, headers=auth)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


async def test_a_burst_of_submits_gets_only_202_or_503_and_stalls_no_one(
    api: httpx.AsyncClient, burst_settings: Settings
) -> None:
    busy, other = await _owner(burst_settings, "busy"), await _owner(burst_settings, "other")
    made = await api.post("/v1/agents", json={"name": "burst"}, headers=busy)
    assert made.status_code == 201, made.text
    agent_id = made.json()["id"]
    mine = await api.post("/v1/jobs", json=http_job(closed_port_url("/mine")), headers=other)
    assert mine.status_code == 202, mine.text

    submits = [_submit(api, busy, n, agent_id) for n in range(SUBMITS)]
    paths = ("/v1/jobs?limit=5", f"/v1/jobs/{mine.json()['id']}", "/v1/agents")
    reads = [_timed_read(api, other, paths[n % len(paths)]) for n in range(READS)]
    answers, read_times = await asyncio.gather(asyncio.gather(*submits), asyncio.gather(*reads))

    statuses = Counter(response.status_code for response in answers)
    errors = [response.text for response in answers if response.status_code >= 500]
    assert set(statuses) <= {202, 503}, (statuses, errors[:3])
    for response in answers:
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) > 0
    assert statuses[202] > 0, statuses
    assert max(read_times) < STALL_S, sorted(read_times)[-5:]


@pytest.mark.postgres
async def test_an_exhausted_pool_answers_503_with_retry_after(settings: Settings) -> None:
    other = await _owner(settings, "other")
    tight = {"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_s": 0.2, "auth_cache_s": 0}
    async with api_client(settings, **tight) as client:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        engine = transport.app.state.outrider.engine  # type: ignore[attr-defined]
        async with engine.connect():  # the pool's only connection, held
            response = await client.get("/v1/jobs", headers=other)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        again = await client.get("/v1/jobs", headers=other)
        assert again.status_code == 200, again.text


async def test_a_database_without_room_for_a_connection_answers_503(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    import asyncpg

    state = client._transport.app.state.outrider  # type: ignore[attr-defined]
    real = state.store.insert

    async def full(rows: Any) -> Any:
        raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")

    state.store.insert = full
    try:
        spec = http_job(closed_port_url("/full"))
        batch = await client.post("/v1/jobs/batch", json={"jobs": [spec]}, headers=auth)
    finally:
        state.store.insert = real
    assert batch.status_code == 503, batch.text
    assert batch.json()["error"]["code"] == "service_unavailable"
    assert int(batch.headers["Retry-After"]) > 0

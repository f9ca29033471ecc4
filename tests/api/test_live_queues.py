"""A submit to a queue no live worker serves is accepted, and its answer says so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from api.deps import AppState
from shared.liveness import REGISTRY_KEY, publish_liveness, remove_liveness
from tests.helpers import http_job

RENDER = {"kind": "render", "input": {"url": "http://127.0.0.1:9/app"}}


def app_state(client: httpx.AsyncClient) -> AppState:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    state: AppState = transport.app.state.outrider  # type: ignore[attr-defined]
    return state


@pytest.fixture
async def only_default_worker(client: httpx.AsyncClient, redis_url: str) -> AsyncIterator[None]:
    """The registry holds one live worker, of the default queue; the API reads it afresh."""
    redis = Redis.from_url(redis_url)
    worker_id = f"test:{uuid.uuid4().hex[:8]}"
    saved = await redis.zrange(REGISTRY_KEY, 0, -1, withscores=True)
    await redis.delete(REGISTRY_KEY)
    await publish_liveness(redis, {"worker_id": worker_id, "queue": "default", "pid": 1}, 60)
    app_state(client).live_queues._served = None
    try:
        yield
    finally:
        await remove_liveness(redis, worker_id)
        if saved:
            await redis.zadd(REGISTRY_KEY, dict(saved))
        app_state(client).live_queues._served = None
        await redis.aclose()


@pytest.mark.usefixtures("only_default_worker")
async def test_a_job_for_an_unserved_queue_is_queued_with_a_warning(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    render = await client.post("/v1/jobs", json=RENDER, headers=auth)
    plain = await client.post("/v1/jobs", json=http_job("http://127.0.0.1:9/x"), headers=auth)
    batch = await client.post(
        "/v1/jobs/batch", json={"jobs": [http_job("http://127.0.0.1:9/y"), RENDER]}, headers=auth
    )

    assert render.status_code == 202, render.text
    assert render.json()["status"] == "queued"
    (warning,) = render.json()["warnings"]
    assert warning["code"] == "no_live_worker"
    assert "'browser'" in warning["message"]
    assert plain.json()["warnings"] == []
    assert [len(job["warnings"]) for job in batch.json()["jobs"]] == [0, 1]
    again = await client.get(f"/v1/jobs/{render.json()['id']}", headers=auth)
    assert again.json()["warnings"] == []

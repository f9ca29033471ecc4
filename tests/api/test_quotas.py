"""Owner quotas: jobs queued at once and jobs per UTC day, refused 429 `quota_exceeded` with
Retry-After; a batch counts every job; the counts heal from the database."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from redis.asyncio import Redis

from shared.queue import OWNER_QUEUED_KEY
from shared.settings import Settings
from tests.api.support import api_client, assert_error, closed_port_url
from tests.conftest import NewOwner, RunWorker
from tests.helpers import http_job, wait_for_job


def _spec(n: int) -> dict[str, object]:
    return {**http_job(closed_port_url(f"/q{n}")), "max_attempts": 1}


def _batch(count: int) -> dict[str, object]:
    return {"jobs": [_spec(n) for n in range(count)]}


def _assert_quota(response: httpx.Response, quota: str, limit: int) -> int:
    assert_error(response, 429, "quota_exceeded")
    assert response.json()["error"]["details"] == {"quota": quota, "limit": limit}
    return int(response.headers["Retry-After"])


async def test_queued_quota_counts_batches_and_frees_as_jobs_leave_the_queue(
    settings: Settings, new_owner: NewOwner, run_worker: RunWorker
) -> None:
    auth, other = await new_owner(), await new_owner()
    async with api_client(settings, owner_max_queued=3) as client:
        first = await client.post("/v1/jobs", json=_spec(0), headers=auth)
        too_many = await client.post("/v1/jobs/batch", json=_batch(3), headers=auth)
        fits = await client.post("/v1/jobs/batch", json=_batch(2), headers=auth)
        full = await client.post("/v1/jobs", json=_spec(9), headers=auth)
        keyed = await client.post(
            "/v1/jobs", json=_spec(8), headers={**auth, "Idempotency-Key": uuid.uuid4().hex}
        )
        elsewhere = await client.post("/v1/jobs/batch", json=_batch(3), headers=other)
        assert first.status_code == 202, first.text
        assert _assert_quota(too_many, "queued", 3) == 5
        assert fits.status_code == 202, fits.text
        _assert_quota(full, "queued", 3)
        _assert_quota(keyed, "queued", 3)
        assert elsewhere.status_code == 202, elsewhere.text  # owners are counted apart
        # Nothing refused was written.
        listed = (await client.get("/v1/jobs", headers=auth)).json()["items"]
        assert len(listed) == 3
        # The jobs run (and fail: nothing listens); the reconciler's count sees them go.
        async with run_worker(owner_max_queued=3):
            for job in [first.json(), *fits.json()["jobs"]]:
                assert (await wait_for_job(client, auth, job["id"]))["status"] == "failed"
            for _ in range(100):
                again = await client.post("/v1/jobs", json=_spec(7), headers=auth)
                if again.status_code == 202:
                    break
                await asyncio.sleep(0.1)
        assert again.status_code == 202, again.text


async def test_daily_quota_refuses_until_midnight_and_is_read_back_from_the_database(
    settings: Settings, new_owner: NewOwner
) -> None:
    auth = await new_owner()
    redis = Redis.from_url(settings.resolved_redis_url)
    try:
        async with api_client(settings, owner_max_jobs_per_day=3) as client:
            batch = await client.post("/v1/jobs/batch", json=_batch(2), headers=auth)
            over = await client.post("/v1/jobs/batch", json=_batch(2), headers=auth)
            one = await client.post("/v1/jobs", json=_spec(0), headers=auth)
            # Redis lost the day's count: it is read back from the jobs' rows.
            days = [key async for key in redis.scan_iter(match="outrider:owner:*:day:*")]
            await redis.delete(*days)
            after_loss = await client.post("/v1/jobs", json=_spec(1), headers=auth)
        assert batch.status_code == 202, batch.text
        wait_s = _assert_quota(over, "jobs_per_day", 3)
        assert 1 <= wait_s <= 86_400
        assert one.status_code == 202, one.text
        _assert_quota(after_loss, "jobs_per_day", 3)
    finally:
        await redis.aclose()


async def test_no_quota_set_touches_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    redis = Redis.from_url(settings.resolved_redis_url)
    try:
        before = await redis.hlen(OWNER_QUEUED_KEY)
        response = await client.post("/v1/jobs/batch", json=_batch(5), headers=auth)
        assert response.status_code == 202, response.text
        assert await redis.hlen(OWNER_QUEUED_KEY) == before
    finally:
        await redis.aclose()


async def test_the_openapi_schema_declares_429_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/jobs", "/v1/jobs/batch"):
        answer = paths[path]["post"]["responses"]["429"]
        assert "Retry-After" in answer["headers"], path

"""The client against a real API process (uvicorn on loopback) and a worker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from outrider_client import (
    AsyncOutrider,
    AuthenticationError,
    NotFoundError,
    Outrider,
    ValidationError,
    WaitTimeout,
)
from tests.conftest import RunWorker
from tests.helpers import TargetServer


def key_of(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


async def test_submit_and_wait_return_the_finished_job(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with AsyncOutrider(live_api, key_of(auth)) as client, run_worker():
        job = await client.submit({"kind": "http", "input": {"url": target.url("/json")}}, wait=30)
        assert job.status == "succeeded"
        assert job.result is not None
        assert job.result["status"] == 200
        later = await client.submit({"kind": "http", "input": {"url": target.url("/ok")}})
        assert later.status == "queued"
        done = await client.wait(later.id, timeout=30)
        assert done.ended
        assert done.status == "succeeded"
        assert [a.outcome for a in await client.attempts(done.id)] == ["succeeded"]


async def test_events_follow_a_job_and_resume_after_an_id(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with AsyncOutrider(live_api, key_of(auth)) as client:
        job = await client.submit({"kind": "http", "input": {"url": target.url("/ok")}})
        async with run_worker():
            seen = [event async for event in client.events(job.id)]
        assert [event.type for event in seen] == ["queued", "started", "succeeded"]
        assert {event.job_id for event in seen} == {job.id}
        resumed = [e async for e in client.events(job.id, last_event_id=seen[0].id)]
        assert [event.type for event in resumed] == ["started", "succeeded"]


async def test_errors_are_typed_with_the_apis_code(live_api: str, auth: dict[str, str]) -> None:
    async with AsyncOutrider(live_api, key_of(auth)) as client:
        with pytest.raises(NotFoundError) as missing:
            await client.get_job(uuid.uuid4())
        assert missing.value.code == "not_found"
        with pytest.raises(ValidationError) as invalid:
            await client.submit({"kind": "teleport", "input": {}})
        assert invalid.value.code == "unknown_kind"
        job = await client.submit({"kind": "http", "input": {"url": "http://127.0.0.1:9/"}})
        with pytest.raises(WaitTimeout) as late:
            await client.wait(job.id, timeout=0.5)
        assert late.value.job_id == str(job.id)
    async with AsyncOutrider(live_api, "not-a-key") as stranger:
        with pytest.raises(AuthenticationError) as refused:
            await stranger.list_jobs()
        assert refused.value.code == "unauthorized"


async def test_another_owners_job_is_not_found(
    live_api: str, auth: dict[str, str], new_owner: object
) -> None:
    other = await new_owner()  # type: ignore[operator]
    async with (
        AsyncOutrider(live_api, key_of(auth)) as mine,
        AsyncOutrider(live_api, key_of(other)) as theirs,
    ):
        job = await mine.submit({"kind": "http", "input": {"url": "http://127.0.0.1:9/"}})
        with pytest.raises(NotFoundError):
            await theirs.get_job(job.id)
        with pytest.raises(NotFoundError):
            await theirs.cancel(job.id)
        assert job.id not in {j.id for j in (await theirs.list_jobs()).items}


async def test_the_blocking_client_does_the_same(
    live_api: str, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    def use() -> list[str]:
        with Outrider(live_api, key_of(auth)) as client:
            jobs = client.submit_batch(
                [{"kind": "http", "input": {"url": target.url(f"/json?n={n}")}} for n in range(3)],
                wait=30,
            )
            with pytest.raises(NotFoundError):
                client.cancel(uuid.uuid4())
            listed = {job.id for job in client.iter_jobs(status="succeeded")}
            assert {job.id for job in jobs} <= listed
            return [job.status for job in jobs]

    async with run_worker():
        statuses = await asyncio.to_thread(use)
    assert statuses == ["succeeded"] * 3

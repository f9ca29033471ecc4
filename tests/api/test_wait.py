"""Submit and wait: `?wait=` answers 200 with the finished job(s), else 202 as they are."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from api.app import create_app
from shared.settings import Settings
from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import TargetServer


def http_job(url: str) -> dict[str, Any]:
    return {"kind": "http", "input": {"url": url}}


async def test_a_quick_job_answers_200_with_its_result(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        response = await client.post(
            "/v1/jobs", params={"wait": 30}, json=http_job(target.url("/json")), headers=auth
        )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["result"]["status"] == 200
    assert job["finished_at"] is not None


async def test_a_job_that_does_not_end_in_time_answers_202_as_it_is(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer
) -> None:
    # No worker runs: the job stays queued for the whole wait.
    response = await client.post(
        "/v1/jobs", params={"wait": 0.3}, json=http_job(target.url("/ok")), headers=auth
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"


async def test_a_batch_answers_200_once_every_job_has_ended(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    jobs = [http_job(target.url(f"/json?n={n}")) for n in range(5)]
    async with run_worker():
        response = await client.post(
            "/v1/jobs/batch", params={"wait": 30}, json={"jobs": jobs}, headers=auth
        )
    assert response.status_code == 200, response.text
    answered = response.json()["jobs"]
    assert [job["status"] for job in answered] == ["succeeded"] * 5
    assert [job["result"]["body"]["query"]["n"] for job in answered] == [str(n) for n in range(5)]


async def test_a_batch_with_a_job_still_running_answers_202(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    jobs = [http_job(target.url("/ok")), http_job(target.url("/slow?s=30"))]
    async with run_worker():
        response = await client.post(
            "/v1/jobs/batch", params={"wait": 1}, json={"jobs": jobs}, headers=auth
        )
        answered = response.json()["jobs"]
        for job in answered:
            await client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert response.status_code == 202, response.text
    assert answered[1]["status"] in {"queued", "running"}


async def test_a_replayed_finished_job_answers_200_without_waiting(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    headers = {**auth, "Idempotency-Key": "wait-replay"}
    body = http_job(target.url("/ok"))
    async with run_worker():
        first = await client.post("/v1/jobs", params={"wait": 30}, json=body, headers=headers)
    assert first.status_code == 200, first.text
    # No worker now, and a long wait: the replay answers at once since the job has ended.
    async with asyncio.timeout(10):
        again = await client.post("/v1/jobs", params={"wait": 60}, json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "succeeded"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch"])
@pytest.mark.parametrize("wait", ["61", "-1", "soon"])
async def test_a_bad_wait_is_a_422(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, wait: str
) -> None:
    job = http_job("http://127.0.0.1:9/")
    body = {"jobs": [job]} if path.endswith("batch") else job
    response = await client.post(path, params={"wait": wait}, json=body, headers=auth)
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["loc"] == ["query", "wait"]


async def test_a_waiting_request_holds_no_database_connection(
    settings: Settings, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state = app.state.outrider
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            request = asyncio.create_task(
                http.post(
                    "/v1/jobs", params={"wait": 30}, json=http_job(target.url("/ok")), headers=auth
                )
            )
            async with asyncio.timeout(10):
                while state.open_streams == 0:  # the request is now waiting on the events
                    await asyncio.sleep(0.01)
            assert state.engine.pool.checkedout() == 0
            async with run_worker():
                response = await request
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"

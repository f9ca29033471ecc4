"""The thinnest end-to-end path: submit an http job, a worker runs it, the row has the result."""

from __future__ import annotations

import httpx

from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, wait_for_job


async def test_http_job_runs_to_success(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with run_worker():
        response = await client.post("/v1/jobs", json=http_job(target.url("/json")), headers=auth)
        assert response.status_code == 202, response.text
        job = await wait_for_job(client, auth, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert job["result"]["status"] == 200
    assert job["result"]["body"]["method"] == "GET"
    attempts = (await client.get(f"/v1/jobs/{job['id']}/attempts", headers=auth)).json()["items"]
    assert [a["outcome"] for a in attempts] == ["succeeded"]

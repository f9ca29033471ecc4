"""Tenancy: an owner never sees or touches another owner's jobs and agents.

Another owner's object answers exactly like a missing one (status, headers, body), so ids
cannot be probed for existence.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api.support import assert_error, closed_port_url
from tests.conftest import NewOwner
from tests.helpers import http_job

# Differs per response by design; everything else must match byte for byte.
VARYING_HEADERS = {"x-request-id"}


def fingerprint(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted(
        (name, value) for name, value in response.headers.items() if name not in VARYING_HEADERS
    )
    return response.status_code, headers, response.content


async def assert_same_as_missing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    method: str,
    path_template: str,
    foreign_id: str,
    body: Any = None,
) -> None:
    """The foreign id's answer is a 404 indistinguishable from a random id's."""
    foreign = await client.request(
        method, path_template.format(id=foreign_id), headers=headers, json=body
    )
    missing = await client.request(
        method, path_template.format(id=uuid.uuid4()), headers=headers, json=body
    )
    assert_error(foreign, 404, "not_found")
    assert fingerprint(foreign) == fingerprint(missing), (method, path_template)


async def test_jobs_of_another_owner_are_invisible(
    client: httpx.AsyncClient, new_owner: NewOwner
) -> None:
    alice, bob = await new_owner(), await new_owner()
    submitted = await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=alice)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    for method, template in [
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/attempts"),
        ("POST", "/v1/jobs/{id}/cancel"),
        ("POST", "/v1/jobs/{id}/retry"),
    ]:
        await assert_same_as_missing(client, bob, method, template, job_id)

    # Bob's cancel did nothing: Alice's job is still queued, and she can cancel it herself.
    job = (await client.get(f"/v1/jobs/{job_id}", headers=alice)).json()
    assert job["status"] == "queued"
    cancelled = await client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
    assert cancelled.json()["status"] == "cancelled"
    # ... and Bob cannot retry it once it is retryable either.
    await assert_same_as_missing(client, bob, "POST", "/v1/jobs/{id}/retry", job_id)
    assert (await client.get(f"/v1/jobs/{job_id}", headers=alice)).json()["status"] == "cancelled"


async def test_agents_of_another_owner_are_invisible(
    client: httpx.AsyncClient, new_owner: NewOwner
) -> None:
    alice, bob = await new_owner(), await new_owner()
    created = await client.post(
        "/v1/agents", json={"name": "scraper", "user_agent": "alice-bot"}, headers=alice
    )
    assert created.status_code == 201, created.text
    agent_id = created.json()["id"]

    await assert_same_as_missing(client, bob, "GET", "/v1/agents/{id}", agent_id)
    await assert_same_as_missing(
        client, bob, "PATCH", "/v1/agents/{id}", agent_id, body={"user_agent": "bob-bot"}
    )
    await assert_same_as_missing(client, bob, "DELETE", "/v1/agents/{id}", agent_id)

    agent = await client.get(f"/v1/agents/{agent_id}", headers=alice)
    assert agent.status_code == 200, "Bob's DELETE removed Alice's agent"
    assert agent.json()["user_agent"] == "alice-bot", "Bob's PATCH changed Alice's agent"

    # Alice's default agent is as invisible as her named one.
    alice_agents = (await client.get("/v1/agents", headers=alice)).json()["items"]
    default_id = next(a["id"] for a in alice_agents if a["is_default"])
    await assert_same_as_missing(client, bob, "GET", "/v1/agents/{id}", default_id)


async def test_lists_show_only_own_rows(client: httpx.AsyncClient, new_owner: NewOwner) -> None:
    alice, bob = await new_owner(), await new_owner()
    alice_agent = (await client.post("/v1/agents", json={"name": "a1"}, headers=alice)).json()
    alice_jobs = set()
    for _ in range(3):
        response = await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=alice)
        alice_jobs.add(response.json()["id"])
    batch = await client.post(
        "/v1/jobs/batch", json={"jobs": [http_job(closed_port_url())] * 2}, headers=alice
    )
    alice_jobs |= {job["id"] for job in batch.json()["jobs"]}
    bob_job = (await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=bob)).json()

    bob_jobs = (await client.get("/v1/jobs", params={"limit": 500}, headers=bob)).json()
    assert [job["id"] for job in bob_jobs["items"]] == [bob_job["id"]]
    listed = (await client.get("/v1/jobs", params={"limit": 500}, headers=alice)).json()
    assert {job["id"] for job in listed["items"]} == alice_jobs

    # Filtering by the other owner's agent reveals nothing either.
    by_agent = await client.get("/v1/jobs", params={"agent_id": alice_agent["id"]}, headers=bob)
    assert by_agent.status_code == 200
    assert by_agent.json()["items"] == []

    bob_agents = (await client.get("/v1/agents", headers=bob)).json()["items"]
    assert [a["name"] for a in bob_agents] == ["default"]
    assert alice_agent["id"] not in {a["id"] for a in bob_agents}
    alice_agents = (await client.get("/v1/agents", headers=alice)).json()["items"]
    assert {a["name"] for a in alice_agents} == {"default", "a1"}


async def test_job_may_not_use_another_owners_agent(
    client: httpx.AsyncClient, new_owner: NewOwner
) -> None:
    alice, bob = await new_owner(), await new_owner()
    alice_agent = (await client.post("/v1/agents", json={"name": "mine"}, headers=alice)).json()
    spec = {**http_job(closed_port_url()), "agent_id": alice_agent["id"]}

    assert_error(await client.post("/v1/jobs", json=spec, headers=bob), 404, "agent_not_found")
    batch = await client.post("/v1/jobs/batch", json={"jobs": [spec]}, headers=bob)
    assert_error(batch, 404, "agent_not_found")
    # A random agent id is refused the same way, and nothing was created for Bob.
    missing = {**spec, "agent_id": str(uuid.uuid4())}
    assert_error(await client.post("/v1/jobs", json=missing, headers=bob), 404, "agent_not_found")
    assert (await client.get("/v1/jobs", headers=bob)).json()["items"] == []
    # The owner herself may use it.
    accepted = await client.post("/v1/jobs", json=spec, headers=alice)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["agent_id"] == alice_agent["id"]


async def test_idempotency_keys_are_per_owner(
    client: httpx.AsyncClient, new_owner: NewOwner
) -> None:
    alice, bob = await new_owner(), await new_owner()
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    first = await client.post(
        "/v1/jobs", json=http_job(closed_port_url("/a")), headers={**alice, **key}
    )
    # Bob's request with the same key and another body is neither a conflict nor a replay.
    second = await client.post(
        "/v1/jobs", json=http_job(closed_port_url("/b")), headers={**bob, **key}
    )
    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers
    # Nor does Bob get Alice's job back when he repeats her body.
    third = await client.post(
        "/v1/jobs", json=http_job(closed_port_url("/a")), headers={**bob, **key}
    )
    error = assert_error(third, 409, "idempotency_conflict")
    assert error["details"] == {"job_id": second.json()["id"]}

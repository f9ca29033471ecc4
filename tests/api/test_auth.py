"""Authentication: every /v1 route needs a live API key; keys are stored only as hashes."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import announce_revocation, hash_key
from shared.models import ApiKey
from shared.repositories.owner import revoke_api_key
from tests.api.support import assert_error, closed_port_url
from tests.conftest import NewOwner
from tests.helpers import http_job

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


async def v1_operations(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(method, concrete path) of every /v1 operation the API documents."""
    spec = (await client.get("/openapi.json")).json()
    operations: list[tuple[str, str]] = []
    for template, item in spec["paths"].items():
        if not template.startswith("/v1/"):
            continue
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        operations.extend((method.upper(), path) for method in item if method in HTTP_METHODS)
    return operations


def plaintext_key(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


async def test_every_v1_route_is_documented_and_found(client: httpx.AsyncClient) -> None:
    operations = await v1_operations(client)
    paths = {path.split("/")[2] for _, path in operations}
    assert {"jobs", "agents"} <= paths, operations
    assert len(operations) >= 12, operations


BAD_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Token ork_notarealkey"},
    {"Authorization": "ork_notarealkey"},
    {"Authorization": "Bearer ork_notarealkey"},
    {"Authorization": "Bearer " + "x" * 5000},
    {"X-API-Key": "ork_notarealkey"},
]


async def test_every_v1_route_refuses_missing_or_bad_keys(client: httpx.AsyncClient) -> None:
    operations = await v1_operations(client)
    for method, path in operations:
        body = {"name": "x"} if method in ("POST", "PATCH") else None
        for headers in BAD_HEADERS:
            response = await client.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert_error(response, 401, "unauthorized")


async def test_unknown_key_for_a_real_owner_prefix_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    key = plaintext_key(auth)
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    response = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "unauthorized")
    assert (await client.get("/v1/jobs", headers=auth)).status_code == 200


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    key = plaintext_key(auth)
    response = await client.get("/v1/agents", headers={"Authorization": f"bearer {key}"})
    assert response.status_code == 200, response.text


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    response = await client.get("/healthz", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 200, response.text


async def test_revoked_key_stops_working_at_once(
    client: httpx.AsyncClient,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    new_owner: NewOwner,
) -> None:
    auth = await new_owner()
    other = await new_owner()
    submitted = await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=auth)
    assert submitted.status_code == 202, submitted.text
    job_path = f"/v1/jobs/{submitted.json()['id']}"
    assert (await client.get(job_path, headers=auth)).status_code == 200

    async with sessionmaker.begin() as session:
        assert await revoke_api_key(session, plaintext_key(auth)) == 1
    # What `outrider keys revoke` does after its commit: API processes forget the keys they
    # remember (a busy client's key is not looked up on every request).
    redis = Redis.from_url(redis_url)
    try:
        assert await announce_revocation(redis)
    finally:
        await redis.aclose()
    # Well within the 5 s the key would otherwise be remembered for.
    for _ in range(40):
        if (await client.get(job_path, headers=auth)).status_code == 401:
            break
        await asyncio.sleep(0.05)

    for method, path in [("GET", job_path), ("GET", "/v1/jobs"), ("GET", "/v1/agents")]:
        assert_error(await client.request(method, path, headers=auth), 401, "unauthorized")
    response = await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=auth)
    assert_error(response, 401, "unauthorized")
    # Only that key is revoked: another owner's key still works.
    assert (await client.get("/v1/jobs", headers=other)).status_code == 200


async def test_keys_are_stored_only_hashed(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], auth: dict[str, str]
) -> None:
    key = plaintext_key(auth)
    secret_part = key[len("ork_") + 6 :]
    assert (await client.get("/v1/jobs", headers=auth)).status_code == 200
    async with sessionmaker() as session:
        rows = (await session.execute(select(ApiKey.__table__))).mappings().all()
    ours = [row for row in rows if row["key_hash"] == hash_key(key)]
    assert len(ours) == 1, "the key's row (found by its hash) is missing"
    for row in rows:
        for column, value in row.items():
            text = str(value)
            assert key not in text, f"api_key.{column} holds a plaintext key"
            assert secret_part not in text, f"api_key.{column} holds most of a plaintext key"

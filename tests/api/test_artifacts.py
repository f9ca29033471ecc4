"""GET /v1/artifacts/{id}: the bytes to their owner; to anyone else, the 404 of a missing one."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Artifact
from shared.repositories.artifact import insert_artifact
from tests.api.support import assert_error
from tests.worker.support import Owner, insert_http_job, make_owner

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def stored(sessionmaker: async_sessionmaker[AsyncSession], owner: Owner) -> Artifact:
    job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/")
    async with sessionmaker.begin() as session:
        return await insert_artifact(
            session,
            owner_id=owner.id,
            job_id=job.id,
            kind="screenshot",
            content_type="image/png",
            data=PNG,
        )


async def test_the_owner_gets_the_bytes_with_their_content_type(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await make_owner(sessionmaker)
    artifact = await stored(sessionmaker, owner)

    response = await client.get(f"/v1/artifacts/{artifact.id}", headers=owner.auth)

    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(PNG))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"].startswith("private")
    assert f"screenshot-{artifact.id}.png" in response.headers["content-disposition"]
    assert artifact.size == len(PNG)


async def test_another_owner_gets_the_same_404_as_for_a_missing_artifact(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner, stranger = await make_owner(sessionmaker), await make_owner(sessionmaker)
    artifact = await stored(sessionmaker, owner)

    foreign = await client.get(f"/v1/artifacts/{artifact.id}", headers=stranger.auth)
    missing = await client.get(f"/v1/artifacts/{uuid.uuid4()}", headers=stranger.auth)

    assert_error(foreign, 404, "not_found")
    assert foreign.json() == missing.json()
    assert foreign.headers.keys() == missing.headers.keys()


async def test_bad_ids_and_missing_keys_are_refused(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await make_owner(sessionmaker)
    artifact = await stored(sessionmaker, owner)

    assert_error(
        await client.get("/v1/artifacts/not-a-uuid", headers=owner.auth), 422, "validation_error"
    )
    assert_error(await client.get(f"/v1/artifacts/{artifact.id}"), 401, "unauthorized")


async def test_artifacts_are_declared_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/artifacts/{artifact_id}"]["get"]

    assert "image/png" in operation["responses"]["200"]["content"]
    assert {"401", "404", "422", "503"} <= set(operation["responses"])

"""Agents: create, read, list, update, delete; secrets are write-only and encrypted at rest."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.models import Agent
from shared.settings import Settings
from tests.api.support import assert_error, closed_port_url
from tests.helpers import http_job

AGENT_FIELDS = {
    "id", "name", "is_default", "headers", "user_agent", "timeout_s", "max_attempts",
    "backoff_base_s", "backoff_max_s", "host_rate_per_s", "host_concurrency",
    "allowed_domains", "blocked_domains", "secret_names", "created_at", "updated_at",
}  # fmt: skip


async def agent_row(sessionmaker: async_sessionmaker[AsyncSession], agent_id: str) -> Agent:
    async with sessionmaker() as session:
        agent = await session.scalar(select(Agent).where(Agent.id == uuid.UUID(agent_id)))
    assert agent is not None
    return agent


async def test_create_get_and_patch(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    body = {
        "name": "crawler",
        "headers": {"X-Team": "search"},
        "user_agent": "crawler/1.0",
        "timeout_s": 12.5,
        "max_attempts": 4,
        "allowed_domains": ["example.com"],
    }
    created = await client.post("/v1/agents", json=body, headers=auth)
    assert created.status_code == 201, created.text
    agent = created.json()
    assert set(agent) >= AGENT_FIELDS, AGENT_FIELDS - set(agent)
    assert not {"secrets", "secrets_ciphertext"} & set(agent)
    assert agent["name"] == "crawler"
    assert agent["is_default"] is False
    assert agent["headers"] == {"X-Team": "search"}
    assert agent["timeout_s"] == 12.5
    assert agent["max_attempts"] == 4
    assert agent["allowed_domains"] == ["example.com"]
    assert agent["blocked_domains"] == []
    assert agent["secret_names"] == []

    fetched = await client.get(f"/v1/agents/{agent['id']}", headers=auth)
    assert fetched.status_code == 200
    shown_once = agent.pop("webhook_secret")  # the create answer alone carries the secret
    assert shown_once
    assert fetched.json() == agent

    patched = await client.patch(
        f"/v1/agents/{agent['id']}",
        json={"name": "crawler-2", "user_agent": None, "allowed_domains": None, "timeout_s": 3},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert after["name"] == "crawler-2"
    assert after["user_agent"] is None
    assert after["allowed_domains"] == []
    assert after["timeout_s"] == 3
    # Fields the patch did not name are unchanged.
    assert after["headers"] == {"X-Team": "search"}
    assert after["max_attempts"] == 4
    assert after["created_at"] == agent["created_at"]
    assert (await client.get(f"/v1/agents/{agent['id']}", headers=auth)).json() == after


async def test_secrets_are_write_only_and_encrypted(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    token, password = f"tok-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    created = await client.post(
        "/v1/agents",
        json={"name": "with-secrets", "secrets": {"API_TOKEN": token, "db.password": password}},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    agent_id = created.json()["id"]
    assert created.json()["secret_names"] == ["API_TOKEN", "db.password"]

    responses = [
        created,
        await client.get(f"/v1/agents/{agent_id}", headers=auth),
        await client.get("/v1/agents", headers=auth),
        await client.patch(f"/v1/agents/{agent_id}", json={"timeout_s": 5}, headers=auth),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert token not in response.text
        assert password not in response.text

    row = await agent_row(sessionmaker, agent_id)
    assert row.secrets_ciphertext is not None
    assert token.encode() not in row.secrets_ciphertext
    assert password.encode() not in row.secrets_ciphertext
    box = SecretBox(settings.resolved_secret_key())
    assert box.open(row.secrets_ciphertext) == {"API_TOKEN": token, "db.password": password}

    # null removes a secret; a new value is added; neither value is ever echoed.
    new_value = f"new-{uuid.uuid4().hex}"
    patched = await client.patch(
        f"/v1/agents/{agent_id}",
        json={"secrets": {"API_TOKEN": None, "OTHER": new_value}},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["secret_names"] == ["OTHER", "db.password"]
    assert new_value not in patched.text
    row = await agent_row(sessionmaker, agent_id)
    assert row.secrets_ciphertext is not None
    assert box.open(row.secrets_ciphertext) == {"OTHER": new_value, "db.password": password}

    # Removing the last secrets leaves nothing stored.
    cleared = await client.patch(
        f"/v1/agents/{agent_id}",
        json={"secrets": {"OTHER": None, "db.password": None}},
        headers=auth,
    )
    assert cleared.json()["secret_names"] == []
    assert (await agent_row(sessionmaker, agent_id)).secrets_ciphertext is None


async def test_list_pagination_walks_every_agent_once(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    names = [f"agent-{i}" for i in range(7)]
    for name in names:
        assert (await client.post("/v1/agents", json={"name": name}, headers=auth)).is_success
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/agents", params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 3
        seen.extend(agent["name"] for agent in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not terminate"
    assert pages == 3
    assert sorted(seen) == sorted([*names, "default"])
    assert len(seen) == len(set(seen))
    # Newest first: the agents come back in reverse creation order, the default one last.
    assert seen == [*reversed(names), "default"]


async def test_duplicate_name_is_a_conflict(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    first = await client.post("/v1/agents", json={"name": "twin"}, headers=auth)
    assert first.status_code == 201
    assert_error(
        await client.post("/v1/agents", json={"name": "twin"}, headers=auth), 409, "agent_exists"
    )
    other = (await client.post("/v1/agents", json={"name": "other"}, headers=auth)).json()
    renamed = await client.patch(f"/v1/agents/{other['id']}", json={"name": "twin"}, headers=auth)
    assert_error(renamed, 409, "agent_exists")
    assert (await client.get(f"/v1/agents/{other['id']}", headers=auth)).json()["name"] == "other"
    # The default agent's name is taken too.
    assert_error(
        await client.post("/v1/agents", json={"name": "default"}, headers=auth),
        409,
        "agent_exists",
    )
    names = [a["name"] for a in (await client.get("/v1/agents", headers=auth)).json()["items"]]
    assert sorted(names) == ["default", "other", "twin"]


async def test_default_agent_exists_and_cannot_be_deleted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    agents = (await client.get("/v1/agents", headers=auth)).json()["items"]
    defaults = [a for a in agents if a["is_default"]]
    assert len(defaults) == 1, agents
    default = defaults[0]
    assert default["name"] == "default"
    response = await client.delete(f"/v1/agents/{default['id']}", headers=auth)
    assert_error(response, 409, "default_agent")
    assert (await client.get(f"/v1/agents/{default['id']}", headers=auth)).status_code == 200
    # Jobs without an agent_id run under it.
    job = await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=auth)
    assert job.json()["agent_id"] == default["id"]


async def test_deleted_agent_is_gone(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    agent = (await client.post("/v1/agents", json={"name": "temp"}, headers=auth)).json()
    path = f"/v1/agents/{agent['id']}"
    deleted = await client.delete(path, headers=auth)
    assert deleted.status_code == 204
    assert deleted.content == b""

    assert_error(await client.get(path, headers=auth), 404, "not_found")
    assert_error(await client.patch(path, json={"name": "x"}, headers=auth), 404, "not_found")
    assert_error(await client.delete(path, headers=auth), 404, "not_found")
    listed = (await client.get("/v1/agents", headers=auth)).json()["items"]
    assert agent["id"] not in {a["id"] for a in listed}
    spec = {**http_job(closed_port_url()), "agent_id": agent["id"]}
    assert_error(await client.post("/v1/jobs", json=spec, headers=auth), 404, "agent_not_found")
    # Its name is free again.
    again = await client.post("/v1/agents", json={"name": "temp"}, headers=auth)
    assert again.status_code == 201, again.text
    assert again.json()["id"] != agent["id"]

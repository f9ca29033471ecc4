"""Webhooks through the API: URL validation, the agent's signing secret (shown once, rotated),
and a job's deliveries (written with the cancel, owner-scoped)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.models import Agent
from shared.repositories.agent import open_webhook_secret
from shared.settings import Settings
from tests.api.support import assert_error, closed_port_url
from tests.api.test_tenancy import assert_same_as_missing
from tests.conftest import NewOwner
from tests.helpers import http_job

HOOK = "http://127.0.0.1:9/hook"  # accepted (loopback is allowed in tests), never served


async def stored_secret(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, agent_id: str
) -> str | None:
    async with sessionmaker() as session:
        sealed = await session.scalar(
            select(Agent.webhook_secret_ciphertext).where(Agent.id == uuid.UUID(agent_id))
        )
    if sealed is None:
        return None
    return open_webhook_secret(SecretBox(settings.resolved_secret_key()), sealed)


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("ftp://example.com/hook", 422, "invalid_webhook_url"),
        ("example.com/hook", 422, "invalid_webhook_url"),
        ("https://user:pw@example.com/hook", 422, "invalid_webhook_url"),
        ("https://exa mple.com/hook", 422, "invalid_webhook_url"),
        ("http://10.1.2.3/hook", 422, "webhook_url_forbidden"),
        ("http://169.254.169.254/latest", 422, "webhook_url_forbidden"),
        ("http://[fd00::1]/hook", 422, "webhook_url_forbidden"),
        ("http://192.168.0.1:8080/hook", 422, "webhook_url_forbidden"),
        ("https://example.com/" + "a" * 2040, 422, "validation_error"),  # > 2048 characters
        ("", 422, "validation_error"),
    ],
)
async def test_job_webhook_url_is_checked_at_submit(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, status: int, code: str
) -> None:
    spec = {**http_job(closed_port_url()), "webhook_url": url}
    assert_error(await client.post("/v1/jobs", json=spec, headers=auth), status, code)
    batch = {"jobs": [http_job(closed_port_url()), spec]}
    assert_error(await client.post("/v1/jobs/batch", json=batch, headers=auth), status, code)
    listed = await client.get("/v1/jobs", headers=auth)
    assert listed.json()["items"] == [], "nothing is created when a webhook URL is refused"


async def test_job_shows_its_webhook_url(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    spec = {**http_job(closed_port_url()), "webhook_url": "https://hooks.example.com/outrider"}
    submitted = await client.post("/v1/jobs", json=spec, headers=auth)
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["webhook_url"] == "https://hooks.example.com/outrider"
    job = (await client.get(f"/v1/jobs/{submitted.json()['id']}", headers=auth)).json()
    assert job["webhook_url"] == "https://hooks.example.com/outrider"
    plain = await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=auth)
    assert plain.json()["webhook_url"] is None


async def test_agent_webhook_url_is_checked(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    forbidden = {"name": "inside", "webhook_url": "http://10.0.0.7/hook"}
    assert_error(
        await client.post("/v1/agents", json=forbidden, headers=auth), 422, "webhook_url_forbidden"
    )
    bad = {"name": "bad", "webhook_url": "gopher://example.com/"}
    assert_error(
        await client.post("/v1/agents", json=bad, headers=auth), 422, "invalid_webhook_url"
    )

    created = await client.post(
        "/v1/agents", json={"name": "hooked", "webhook_url": HOOK}, headers=auth
    )
    assert created.status_code == 201, created.text
    agent_id = created.json()["id"]
    assert created.json()["webhook_url"] == HOOK
    patch = await client.patch(
        f"/v1/agents/{agent_id}", json={"webhook_url": "http://[::ffff:10.0.0.1]/"}, headers=auth
    )
    assert_error(patch, 422, "webhook_url_forbidden")
    assert (await client.get(f"/v1/agents/{agent_id}", headers=auth)).json()["webhook_url"] == HOOK
    cleared = await client.patch(f"/v1/agents/{agent_id}", json={"webhook_url": None}, headers=auth)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["webhook_url"] is None


async def test_agent_webhook_secret_is_shown_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    created = await client.post("/v1/agents", json={"name": "signer"}, headers=auth)
    assert created.status_code == 201, created.text
    agent = created.json()
    secret = agent["webhook_secret"]
    assert isinstance(secret, str)
    assert len(secret) >= 32
    assert agent["has_webhook_secret"] is True
    assert await stored_secret(sessionmaker, settings, agent["id"]) == secret

    # Never again: not in a read, a list, or an update.
    for response in [
        await client.get(f"/v1/agents/{agent['id']}", headers=auth),
        await client.get("/v1/agents", headers=auth),
        await client.patch(f"/v1/agents/{agent['id']}", json={"timeout_s": 5}, headers=auth),
    ]:
        assert response.status_code == 200, response.text
        assert secret not in response.text
        assert "webhook_secret_ciphertext" not in response.text
    fetched = (await client.get(f"/v1/agents/{agent['id']}", headers=auth)).json()
    assert "webhook_secret" not in fetched
    assert fetched["has_webhook_secret"] is True

    # A secret the caller chose is write-only: stored, not echoed.
    chosen = f"chosen-{uuid.uuid4().hex}"
    mine = await client.post(
        "/v1/agents", json={"name": "chosen", "webhook_secret": chosen}, headers=auth
    )
    assert mine.status_code == 201, mine.text
    assert mine.json()["webhook_secret"] is None
    assert chosen not in mine.text
    assert await stored_secret(sessionmaker, settings, mine.json()["id"]) == chosen

    short = await client.post(
        "/v1/agents", json={"name": "short", "webhook_secret": "too-short"}, headers=auth
    )
    error = assert_error(short, 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "webhook_secret"]


async def test_rotate_webhook_secret(
    client: httpx.AsyncClient,
    new_owner: NewOwner,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    alice, bob = await new_owner(), await new_owner()
    default = (await client.get("/v1/agents", headers=alice)).json()["items"][0]
    assert default["is_default"] is True
    # Agents from before webhooks (the default one) start without a secret.
    assert default["has_webhook_secret"] is False
    assert await stored_secret(sessionmaker, settings, default["id"]) is None

    rotated = await client.post(f"/v1/agents/{default['id']}/webhook-secret", headers=alice)
    assert rotated.status_code == 200, rotated.text
    first = rotated.json()["webhook_secret"]
    assert rotated.json()["agent_id"] == default["id"]
    assert await stored_secret(sessionmaker, settings, default["id"]) == first
    again = await client.post(f"/v1/agents/{default['id']}/webhook-secret", headers=alice)
    second = again.json()["webhook_secret"]
    assert second != first
    assert await stored_secret(sessionmaker, settings, default["id"]) == second
    fetched = (await client.get(f"/v1/agents/{default['id']}", headers=alice)).json()
    assert fetched["has_webhook_secret"] is True

    # Another owner can neither rotate nor learn the secret: a 404 like a missing agent's.
    await assert_same_as_missing(
        client, bob, "POST", "/v1/agents/{id}/webhook-secret", default["id"]
    )
    assert await stored_secret(sessionmaker, settings, default["id"]) == second


async def test_cancel_writes_deliveries_and_they_are_owner_scoped(
    client: httpx.AsyncClient, new_owner: NewOwner
) -> None:
    alice, bob = await new_owner(), await new_owner()
    agent_hook = "http://127.0.0.1:9/agent-hook"
    created = await client.post(
        "/v1/agents", json={"name": "hooked", "webhook_url": agent_hook}, headers=alice
    )
    spec = {**http_job(closed_port_url()), "agent_id": created.json()["id"], "webhook_url": HOOK}
    job = (await client.post("/v1/jobs", json=spec, headers=alice)).json()
    empty = await client.get(f"/v1/jobs/{job['id']}/deliveries", headers=alice)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"items": []}

    cancelled = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert cancelled.json()["status"] == "cancelled"
    listed = await client.get(f"/v1/jobs/{job['id']}/deliveries", headers=alice)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert sorted((d["source"], d["url"]) for d in items) == [("agent", agent_hook), ("job", HOOK)]
    for delivery in items:
        assert delivery["event"] == "job.cancelled"
        assert delivery["status"] == "pending"
        assert delivery["attempts"] == 0
        assert delivery["next_attempt_at"] is not None
        assert delivery["last_attempt_at"] is None
        assert delivery["last_status_code"] is None
        assert delivery["delivered_at"] is None
    assert items[0]["event_id"] == items[1]["event_id"], "one event, announced to two URLs"

    await assert_same_as_missing(client, bob, "GET", "/v1/jobs/{id}/deliveries", job["id"])


async def test_one_delivery_when_job_and_agent_share_the_url(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    default = (await client.get("/v1/agents", headers=auth)).json()["items"][0]
    patched = await client.patch(
        f"/v1/agents/{default['id']}", json={"webhook_url": HOOK}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    spec = {**http_job(closed_port_url()), "webhook_url": HOOK}
    job = (await client.post("/v1/jobs", json=spec, headers=auth)).json()
    plain = (await client.post("/v1/jobs", json=http_job(closed_port_url()), headers=auth)).json()
    for job_id in (job["id"], plain["id"]):
        assert (await client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)).status_code == 200

    shared = (await client.get(f"/v1/jobs/{job['id']}/deliveries", headers=auth)).json()["items"]
    assert [(d["source"], d["url"]) for d in shared] == [("job", HOOK)]
    # A job without its own URL is announced to its agent's.
    inherited = (await client.get(f"/v1/jobs/{plain['id']}/deliveries", headers=auth)).json()
    assert [(d["source"], d["url"]) for d in inherited["items"]] == [("agent", HOOK)]


async def test_webhook_routes_declare_their_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    deliveries = spec["paths"]["/v1/jobs/{job_id}/deliveries"]["get"]
    rotate = spec["paths"]["/v1/agents/{agent_id}/webhook-secret"]["post"]
    for operation in (deliveries, rotate):
        assert {"401", "404", "422", "503"} <= set(operation["responses"])
    job_spec = spec["components"]["schemas"]["HttpJobSpec"]["properties"]
    assert "webhook_url" in job_spec

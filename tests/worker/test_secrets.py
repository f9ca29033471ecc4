"""Agent secrets: injected into the request, never stored in Redis or shown by the API, and
never handed to another host on a redirect."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
from redis.asyncio import Redis

from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, start_target_server, wait_for_job
from tests.worker.support import attempts_of, submit


def new_secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def seen(target: TargetServer) -> list[dict[str, str]]:
    """The headers of each request the target received, names lowercased."""
    return [{k.lower(): v for k, v in headers.items()} for headers in target.seen_headers]


async def make_agent(
    client: httpx.AsyncClient, auth: dict[str, str], secrets: dict[str, str]
) -> str:
    body = {"name": f"agent-{uuid.uuid4().hex[:8]}", "secrets": secrets}
    response = await client.post("/v1/agents", json=body, headers=auth)
    assert response.status_code == 201, response.text
    agent = response.json()
    assert agent["secret_names"] == sorted(secrets)
    for value in secrets.values():
        assert value not in response.text
    agent_id: str = agent["id"]
    return agent_id


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return " ".join(f"{_as_text(k)}={_as_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return " ".join(_as_text(item) for item in value)
    return str(value)


async def redis_dump(url: str) -> dict[str, str]:
    """Every key of the Redis db and its value as text, whatever the type."""
    redis = Redis.from_url(url)
    dump: dict[str, str] = {}
    try:
        async for raw_key in redis.scan_iter(count=1000):
            key = raw_key.decode("utf-8", "replace")
            kind = (await redis.type(raw_key)).decode()
            value: Any
            if kind == "string":
                value = await redis.get(raw_key)
            elif kind == "hash":
                value = await redis.hgetall(raw_key)
            elif kind == "list":
                value = await redis.lrange(raw_key, 0, -1)
            elif kind == "set":
                value = await redis.smembers(raw_key)
            elif kind == "zset":
                value = await redis.zrange(raw_key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await redis.xrange(raw_key)
            else:
                value = kind  # the key vanished between SCAN and TYPE
            dump[key] = _as_text(value)
    finally:
        await redis.aclose()
    return dump


async def test_secret_reaches_the_target_and_nowhere_else(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    run_worker: RunWorker,
    settings: Settings,
) -> None:
    token, key = new_secret(), new_secret()
    agent_id = await make_agent(client, auth, {"api_token": token, "api_key": key})
    bearer_spec = {
        **http_job(target.url("/ok"), auth={"secret": "api_token"}),
        "agent_id": agent_id,
    }
    header_spec = {
        **http_job(
            target.url("/ok"),
            auth={"secret": "api_key", "scheme": "header", "header": "X-Api-Key"},
        ),
        "agent_id": agent_id,
    }
    async with run_worker():
        bearer_id = await submit(client, auth, bearer_spec)
        bearer = await wait_for_job(client, auth, bearer_id)
        header_id = await submit(client, auth, header_spec)
        header = await wait_for_job(client, auth, header_id)
        # While the worker is up, so the scan provably reads the worker's own keys too.
        dump = await redis_dump(settings.resolved_redis_url)

    assert bearer["status"] == "succeeded", bearer
    assert header["status"] == "succeeded", header
    received = seen(target)
    assert [h.get("authorization") for h in received] == [f"Bearer {token}", None]
    assert [h.get("x-api-key") for h in received] == [None, key]

    assert any(k.startswith("outrider:worker:") for k in dump), sorted(dump)
    for secret in (token, key):
        leaks = [k for k, v in dump.items() if secret in k or secret in v]
        assert leaks == [], f"the secret is in Redis under {leaks}"

    for job_id in (bearer_id, header_id):
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/attempts", "/v1/jobs"):
            response = await client.get(path, headers=auth)
            assert response.status_code == 200
            assert token not in response.text
            assert key not in response.text
    assert bearer["input"]["auth"]["secret"] == "api_token"  # the name, not the value
    agent_text = (await client.get(f"/v1/agents/{agent_id}", headers=auth)).text
    assert token not in agent_text
    assert key not in agent_text


async def test_credentials_are_not_forwarded_to_another_host(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    token, key = new_secret(), new_secret()
    agent_id = await make_agent(client, auth, {"api_token": token, "api_key": key})
    # 127.0.0.2 is loopback too (all of 127/8 on Linux), but a different host to the client.
    async with start_target_server("127.0.0.2") as other:
        away = target.url("/redirect?to=" + quote(other.url("/ok"), safe=""))
        home = target.url("/redirect?to=/ok")
        specs = [
            http_job(away, auth={"secret": "api_token"}),
            http_job(away, auth={"secret": "api_key", "scheme": "header", "header": "X-Api-Key"}),
            http_job(home, auth={"secret": "api_token"}),
        ]
        async with run_worker():
            jobs = []
            for spec in specs:
                job_id = await submit(client, auth, {**spec, "agent_id": agent_id})
                jobs.append(await wait_for_job(client, auth, job_id))

    assert [job["status"] for job in jobs] == ["succeeded"] * 3, jobs
    assert jobs[0]["result"]["final_url"] == other.url("/ok")
    assert jobs[2]["result"]["final_url"] == target.url("/ok")
    bearer_hop, header_hop, *same_host = seen(target)
    assert bearer_hop.get("authorization") == f"Bearer {token}"
    assert header_hop.get("x-api-key") == key
    assert len(other.seen_headers) == 2
    for headers in seen(other):
        assert "authorization" not in headers
        assert "x-api-key" not in headers
        assert token not in str(headers)
        assert key not in str(headers)
    # A redirect on the same host keeps the credentials: both hops carry them.
    assert [h.get("authorization") for h in same_host] == [f"Bearer {token}"] * 2


async def test_missing_secret_fails_without_calling_or_retrying(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    agent_id = await make_agent(client, auth, {"present": new_secret()})
    spec = {
        **http_job(target.url("/ok"), auth={"secret": "absent"}),
        "agent_id": agent_id,
        "max_attempts": 5,
    }
    async with run_worker():
        job_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "secret_not_found"
    assert job["error"]["retryable"] is False
    assert "absent" in job["error"]["message"]
    assert job["attempts"] == 1
    assert target.hits == {}
    attempts = await attempts_of(client, auth, job_id)
    assert [(a["outcome"], a["error_code"]) for a in attempts] == [("failed", "secret_not_found")]

"""What the proxy tests share: agents with proxies, jobs run to their end, workers, bench keys."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.asyncio import Redis

from shared.proxies import proxy_id
from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker.support import submit

# Workers that may reach 127.0.0.1 only: 127.0.0.2 (a proxy's way out) is forbidden to them.
WORKER = {"egress_allow_cidrs": ["127.0.0.1/32"], "egress_allowed_ports": ["1-65535"]}
UNLIMITED = {"host_rate_per_s": 0}
# Each proxy connects out from a loopback address of its own: the target sees who came.
SOURCE_A, SOURCE_B, SOURCE_SOCKS, SOURCE_TLS = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


def password() -> str:
    return f"pw-{uuid.uuid4().hex}"


async def make_agent(client: httpx.AsyncClient, auth: dict[str, str], **profile: Any) -> str:
    """A new agent of the owner behind `auth` (proxies, secrets, ... in `profile`): its id."""
    body = {"name": f"agent-{uuid.uuid4().hex[:8]}", **profile}
    response = await client.post("/v1/agents", json=body, headers=auth)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def proxied_agent(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    proxies: list[tuple[str, str | None]],
    **profile: Any,
) -> str:
    """An agent whose proxies are `(url, credentials or None)`, each credential a secret."""
    secrets = {f"proxy-{n}": creds for n, (_, creds) in enumerate(proxies) if creds}
    entries = [
        {"url": url, "auth_secret": f"proxy-{n}"} if creds else {"url": url}
        for n, (url, creds) in enumerate(proxies)
    ]
    return await make_agent(client, auth, secrets=secrets, proxies=entries, **profile)


async def run_jobs(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    specs: list[dict[str, Any]],
    timeout_s: float = 60,
) -> list[dict[str, Any]]:
    """Submit every spec, then wait for each job's end (in the specs' order)."""
    ids = [await submit(client, auth, spec) for spec in specs]
    return [await wait_for_job(client, auth, job_id, timeout_s=timeout_s) for job_id in ids]


def proxied_job(
    kind: str, agent_id: str, url: str, *, attempts: int | None = None, **input_fields: Any
) -> dict[str, Any]:
    """A job spec for `agent_id` (`attempts`: its max_attempts, when given)."""
    spec: dict[str, Any] = {
        "kind": kind,
        "agent_id": agent_id,
        "input": {"url": url, **input_fields},
    }
    if attempts is not None:
        spec["max_attempts"] = attempts
    return spec


def proxy_of(job: dict[str, Any]) -> str:
    """The proxy that served a job that succeeded."""
    assert job["status"] == "succeeded", job
    name: str = job["result"]["metadata"]["proxy"]
    return name


@contextlib.asynccontextmanager
async def workers(
    run_worker: RunWorker, browser: bool = True, **overrides: Any
) -> AsyncIterator[None]:
    """A default worker (http, fetch) and, with `browser`, a browser worker (render, scrape)."""
    settings = {**WORKER, **UNLIMITED, **overrides}
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(run_worker(**settings))
        if browser:
            await stack.enter_async_context(run_worker(queue="browser", concurrency=4, **settings))
        yield


def bench_key(agent_id: str, proxy_url: str, secret: str | None = None) -> str:
    """The Redis key that benches one proxy of an agent."""
    return f"outrider:proxy:bench:{proxy_id(uuid.UUID(agent_id), proxy_url, secret)}"


async def bench_keys(redis_url: str) -> list[str]:
    redis = Redis.from_url(redis_url)
    try:
        return [k.decode() async for k in redis.scan_iter(match="outrider:proxy:bench:*")]
    finally:
        await redis.aclose()


async def forget_proxies(redis_url: str) -> None:
    """Drop every bench, round-robin counter and sticky choice (a test starts afresh)."""
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match="outrider:proxy:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()

"""Small helpers shared by the worker tests: submit a job, read its attempts, make rows."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.repositories.agent import get_default_agent
from shared.repositories.job import NewJob, insert_jobs
from shared.repositories.owner import create_api_key, get_or_create_owner


async def submit(client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any]) -> str:
    """POST a job spec; returns the new job's id."""
    response = await client.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def get_job(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def attempts_of(
    client: httpx.AsyncClient, auth: dict[str, str], job_id: str
) -> list[dict[str, Any]]:
    """The job's attempts as the API shows them, oldest first."""
    response = await client.get(f"/v1/jobs/{job_id}/attempts", headers=auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def when(value: str) -> datetime:
    """An API timestamp."""
    return datetime.fromisoformat(value)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll `check` until it holds; fail after `timeout_s` naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Owner:
    """An owner made straight in the database: its id, default agent and API auth headers."""

    id: uuid.UUID
    agent_id: uuid.UUID
    auth: dict[str, str]


async def make_owner(sessionmaker: async_sessionmaker[AsyncSession]) -> Owner:
    async with sessionmaker.begin() as session:
        owner = await get_or_create_owner(session, f"owner-{uuid.uuid4().hex[:8]}")
        _, key = await create_api_key(session, owner)
        agent = await get_default_agent(session, owner.id)
    return Owner(id=owner.id, agent_id=agent.id, auth={"Authorization": f"Bearer {key}"})


async def insert_http_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: Owner,
    url: str,
    *,
    max_attempts: int = 3,
    queue: str = "default",
) -> NewJob:
    """Write a queued `http` job row without enqueuing it (what a lost enqueue leaves)."""
    row = {
        "owner_id": owner.id,
        "agent_id": owner.agent_id,
        "kind": "http",
        "queue": queue,
        "input": {"url": url},
        "max_attempts": max_attempts,
        "timeout_s": 10.0,
    }
    async with sessionmaker.begin() as session:
        (job,) = await insert_jobs(session, [row])
    return job

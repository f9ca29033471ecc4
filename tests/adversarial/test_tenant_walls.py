"""Tenant walls for outbound HTTP: two owners' real jobs through a real worker, against an
upstream that desyncs (tests/adversarial/desync.py).

Smuggling is refused at submit; and with every header check bypassed (rows written around
the API, the worker's check switched off), a smuggled request still only ever answers its
own owner: each owner's requests, robots.txt and webhooks ride that owner's connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Agent
from shared.repositories.job import insert_jobs
from tests.adversarial.desync import Upstream, desync_upstream
from tests.adversarial.variants import SMUGGLED_BODY, SMUGGLING
from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker.support import Owner, eventually, make_owner, submit

UNLIMITED = {"host_rate_per_s": 0, "host_concurrency": 0}


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with desync_upstream() as server:
        yield server


async def set_agent(
    sessionmaker: async_sessionmaker[AsyncSession], owner: Owner, **values: Any
) -> None:
    """Write the owner's default agent straight to the database, past the API's checks."""
    async with sessionmaker.begin() as session:
        await session.execute(update(Agent).where(Agent.id == owner.agent_id).values(**values))


async def run_job(client: httpx.AsyncClient, owner: Owner, spec: dict[str, Any]) -> dict[str, Any]:
    job_id = await submit(client, owner.auth, spec)
    return await wait_for_job(client, owner.auth, job_id, timeout_s=60)  # a busy machine


async def give_secret(client: httpx.AsyncClient, owner: Owner, value: str) -> None:
    patch = {"secrets": {"token": value}}
    response = await client.patch(f"/v1/agents/{owner.agent_id}", json=patch, headers=owner.auth)
    assert response.status_code == 200, response.text


def call(url: str, attempts: int = 1, **input_fields: Any) -> dict[str, Any]:
    return {"kind": "http", "input": {"url": url, **input_fields}, "max_attempts": attempts}


def answer(job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "succeeded", job
    body: dict[str, Any] = job["result"]["body"]
    return body


def connections(upstream: Upstream, *prefixes: str) -> set[int]:
    return {r.connection for r in upstream.requests if r.line.split(" ")[1].startswith(prefixes)}


async def test_smuggling_is_refused_at_submit_and_reaches_nobody(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    upstream: Upstream,
) -> None:
    a, b = await make_owner(sessionmaker), await make_owner(sessionmaker)
    await give_secret(client, b, "B-SECRET")
    async with run_worker(concurrency=1):
        for headers, code, _ in SMUGGLING:
            spec = call(upstream.base_url + "/a", method="POST", headers=headers, text="x")
            response = await client.post("/v1/jobs", json=spec, headers=a.auth)
            assert_error(response, 422, code)
        b_job = await run_job(client, b, call(upstream.base_url + "/b", auth={"secret": "token"}))
    assert answer(b_job) == {"request_line": "GET /b HTTP/1.1", "authorization": "Bearer B-SECRET"}
    assert upstream.lines() == ["GET /b HTTP/1.1"]
    assert (await client.get("/v1/jobs", headers=a.auth)).json()["items"] == []


@pytest.mark.parametrize(
    "framing",
    [
        {"Transfer-Encoding": "chunked"},
        {"transfer-encoding": "Chunked"},
        {"TRANSFER-ENCODING": " chunked "},
    ],
)
async def test_with_the_checks_bypassed_a_smuggled_answer_stays_with_its_owner(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    framing: dict[str, str],
) -> None:
    monkeypatch.setattr("worker.runner.check_headers", lambda *args: None)
    a, b = await make_owner(sessionmaker), await make_owner(sessionmaker)
    await set_agent(sessionmaker, a, headers=framing)  # what the API now refuses
    await give_secret(client, b, "B-SECRET")
    base = upstream.base_url
    async with run_worker(concurrency=1):
        a1 = await run_job(client, a, call(base + "/a1", method="POST", text=SMUGGLED_BODY))
        b1 = await run_job(client, b, call(base + "/b1", auth={"secret": "token"}))
        # A's agent frames every body as chunked: this one is the empty chunked body.
        a2 = await run_job(client, a, call(base + "/a2", method="POST", text="0\r\n\r\n"))
        b2 = await run_job(client, b, call(base + "/b2", auth={"secret": "token"}))

    # The upstream did desync: A's smuggled request was framed as a request of its own...
    assert upstream.lines() == [
        "POST /a1 HTTP/1.1",
        "GET /smuggled-by-A HTTP/1.1",
        "GET /b1 HTTP/1.1",
        "POST /a2 HTTP/1.1",
        "GET /b2 HTTP/1.1",
    ]
    # ...and its answer went to A's next call, on A's connection; B saw only its own answers.
    assert answer(a1) == {"request_line": "POST /a1 HTTP/1.1", "authorization": None}
    assert answer(a2) == {"request_line": "GET /smuggled-by-A HTTP/1.1", "authorization": None}
    for job, path in ((b1, "/b1"), (b2, "/b2")):
        expected = {"request_line": f"GET {path} HTTP/1.1", "authorization": "Bearer B-SECRET"}
        assert answer(job) == expected
    assert "B-SECRET" not in str(a1) + str(a2)
    assert connections(upstream, "/a", "/smuggled") & connections(upstream, "/b") == set()


async def test_robots_txt_and_webhooks_ride_their_owners_connections(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    upstream: Upstream,
) -> None:
    a, b = await make_owner(sessionmaker), await make_owner(sessionmaker)
    base = upstream.base_url
    async with run_worker(concurrency=1, **UNLIMITED):
        jobs = {}
        for owner, name in ((a, "a"), (b, "b")):
            spec = {"kind": "fetch", "input": {"url": f"{base}/{name}-page"}}
            spec["webhook_url"] = f"{base}/{name}-hook"
            jobs[name] = await run_job(client, owner, spec)
            assert jobs[name]["status"] == "succeeded", jobs[name]

        async def delivered() -> bool:
            hooks = [r for r in upstream.requests if "-hook" in r.line]
            return len(hooks) == 2

        await eventually(delivered, 60, "both webhooks delivered")

    paths = sorted(r.line.split(" ")[1] for r in upstream.requests)
    assert paths == ["/a-hook", "/a-page", "/b-hook", "/b-page", "/robots.txt"]
    robots = connections(upstream, "/robots.txt")
    assert robots <= connections(upstream, "/a-page"), "robots.txt came on A's connection"
    assert connections(upstream, "/a", "/robots.txt") & connections(upstream, "/b") == set()


async def test_rows_saved_around_the_rules_fail_with_the_stable_code(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    upstream: Upstream,
) -> None:
    """Agents and jobs stored before the rules (or written around the API) fail at once, not
    retried, before any request; never `internal_error`."""
    base = upstream.base_url
    owners = [await make_owner(sessionmaker) for _ in range(4)]
    await set_agent(sessionmaker, owners[0], headers={"Transfer-Encoding": "chunked"})
    await set_agent(sessionmaker, owners[1], user_agent="bot\r\nX-Injected: 1")
    await give_secret(client, owners[2], "S3CRET-VALUE\n")
    row = {
        "owner_id": owners[3].id,
        "agent_id": owners[3].agent_id,
        "kind": "http",
        "queue": "default",
        "input": {"url": base + "/row", "headers": {"Content-Length": "0"}},
        "max_attempts": 3,
        "timeout_s": 10.0,
    }
    async with sessionmaker.begin() as session:  # never enqueued: the reconciler does it
        (stored,) = await insert_jobs(session, [row])
    async with run_worker(concurrency=2):
        found = [
            await run_job(client, owners[0], call(base + "/x", attempts=3)),
            await run_job(client, owners[1], call(base + "/x", attempts=3)),
            await run_job(
                client, owners[2], call(base + "/x", attempts=3, auth={"secret": "token"})
            ),
            await wait_for_job(client, owners[3].auth, str(stored.id), timeout_s=60),
        ]
    codes = [(j["status"], j["error"]["code"], j["attempts"]) for j in found]
    assert codes == [
        ("failed", "forbidden_header", 1),
        ("failed", "invalid_header", 1),
        ("failed", "invalid_header", 1),
        ("failed", "forbidden_header", 1),
    ]
    assert found[0]["error"]["details"] == {"header": "Transfer-Encoding"}
    assert found[1]["error"]["details"] == {"header": "User-Agent"}
    assert found[2]["error"]["details"] == {"header": "Authorization"}
    assert "S3CRET" not in str(found[2])
    assert upstream.requests == []


async def test_a_worker_keeps_one_pool_per_owner(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    upstream: Upstream,
) -> None:
    """Keep-alive still works within an owner: its calls share a connection; three owners
    use three."""
    owners = [await make_owner(sessionmaker) for _ in range(3)]
    async with run_worker(concurrency=1):
        for round_ in range(2):
            for number, owner in enumerate(owners):
                job = await run_job(client, owner, call(f"{upstream.base_url}/o{number}-{round_}"))
                assert answer(job)["request_line"] == f"GET /o{number}-{round_} HTTP/1.1"
    per_owner = [connections(upstream, f"/o{n}-") for n in range(3)]
    assert [len(c) for c in per_owner] == [1, 1, 1], per_owner
    assert len(set.union(*per_owner)) == 3
    assert upstream.connections == 3

"""Sessions end to end: a render logs in, later fetches and renders of the same session are
members, other sessions, jobs without one and other owners are not; one job of a session at a
time; DELETE forgets it. Real Chromium, PostgreSQL and Redis; the site is on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.models import AgentSession
from shared.repositories.sessions import read_session, write_session
from tests.api.support import assert_error
from tests.conftest import NewOwner, RunWorker
from tests.helpers import wait_for_job
from tests.worker.reach_site import PASSWORD, ReachSite, serve_reach_site
from tests.worker.support import attempts_of, submit
from tests.worker.test_browser_site import browser_worker


@pytest.fixture
async def site() -> AsyncIterator[ReachSite]:
    async with serve_reach_site() as served:
        yield served


@contextlib.asynccontextmanager
async def workers(run_worker: RunWorker) -> AsyncIterator[None]:
    """A browser worker (render) and a default one (fetch, http), unpaced."""
    async with browser_worker(run_worker), run_worker(queue="default", host_rate_per_s=0):
        yield


async def run(
    client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any], timeout_s: float = 40
) -> dict[str, Any]:
    job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=timeout_s)
    assert job["status"] == "succeeded", job
    return job


def fetch(url: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "fetch", "input": {"url": url, "formats": ["markdown"], **fields}}


def render(url: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "render", "input": {"url": url, "formats": ["markdown"], **fields}}


LOGIN_ACTIONS = [
    {"type": "fill", "selector": "#user", "value": "alice"},
    {"type": "fill", "selector": "#pass", "value": PASSWORD},
    {"type": "click", "selector": "#go"},
    {"type": "scroll", "selector": "#welcome"},  # waits until the members' page shows
]


async def default_agent(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    agents = (await client.get("/v1/agents", headers=auth)).json()["items"]
    return str(next(a["id"] for a in agents if a["is_default"]))


async def test_a_render_login_is_seen_by_later_jobs_of_its_session_only(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    new_owner: NewOwner,
    site: ReachSite,
    run_worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    members = site.url("/members")
    stranger = await new_owner()
    async with workers(run_worker):
        login = await run(
            client, auth, render(site.url("/login"), actions=LOGIN_ACTIONS, session="s1")
        )
        member = await run(client, auth, fetch(members, session="s1"))
        other, nobody, foreign = await asyncio.gather(
            run(client, auth, fetch(members, session="s2")),
            run(client, auth, fetch(members)),
            run(client, stranger, fetch(members, session="s1")),
        )
        # The fetch's own cookie (`visits`) is in the session for the next render, and the
        # login page's localStorage too.
        again = await run(client, auth, render(members, session="s1"))
        stored = await run(client, auth, render(site.url("/storage"), session="s1"))
        fresh_render = await run(client, auth, render(site.url("/storage")))

        agent_id = await default_agent(client, auth)
        listed = (await client.get(f"/v1/agents/{agent_id}/sessions", headers=auth)).json()
        async with sessionmaker() as db:
            row = await db.scalar(
                select(AgentSession).where(
                    AgentSession.agent_id == uuid.UUID(agent_id), AgentSession.name == "s1"
                )
            )
        assert row is not None
        foreign_delete = await client.delete(f"/v1/agents/{agent_id}/sessions/s1", headers=stranger)
        deleted = await client.delete(f"/v1/agents/{agent_id}/sessions/s1", headers=auth)
        deleted_twice = await client.delete(f"/v1/agents/{agent_id}/sessions/s1", headers=auth)
        after = await run(client, auth, fetch(members, session="s1"))

    assert "Members only" in login["result"]["markdown"], login
    assert "Members only" in member["result"]["markdown"]
    assert "visit 2" in member["result"]["markdown"]  # the render's visit set visits=1
    for job in (other, nobody, foreign):
        assert "Please log in" in job["result"]["markdown"], job
        assert "Members only" not in job["result"]["markdown"]
    assert "visit 3" in again["result"]["markdown"]  # the fetch's visits=2 reached the browser
    assert "theme: dark" in stored["result"]["markdown"]
    assert "theme: none" in fresh_render["result"]["markdown"]

    # The jobs without the session sent no session cookie; the other owner's neither.
    sent = [seen["cookie"] for seen in site.seen["/members"]]
    assert sum("sid=" in cookie for cookie in sent) == 3  # the login's, the fetch's, the render's

    # The sessions jobs changed are stored (s2 got its `visits`), sealed: no cookie in the clear.
    assert [s["name"] for s in listed["items"]] == ["s1", "s2"]
    assert all(token.encode() not in row.state_ciphertext for token in site.tokens)
    opened = SecretBox("test-secret-key").open_json(row.state_ciphertext)
    assert {c["name"] for c in opened["cookies"]} == {"sid", "visits"}

    assert_error(foreign_delete, 404, "not_found")
    assert deleted.status_code == 204
    assert_error(deleted_twice, 404, "not_found")
    assert "Please log in" in after["result"]["markdown"]


async def test_two_jobs_of_one_session_never_overlap(
    client: httpx.AsyncClient, auth: dict[str, str], site: ReachSite, run_worker: RunWorker
) -> None:
    specs = [fetch(site.url(f"/hold?ms=300&tag=locked{n}"), session="serial") for n in range(4)]
    async with run_worker(queue="default", host_rate_per_s=0, host_concurrency=0):
        ids = [await submit(client, auth, spec) for spec in specs]
        jobs = [await wait_for_job(client, auth, job_id, timeout_s=40) for job_id in ids]
        attempts = [await attempts_of(client, auth, job_id) for job_id in ids]

    assert [job["status"] for job in jobs] == ["succeeded"] * 4, jobs
    held = sorted((start, end) for start, end, tag in site.holds if tag.startswith("locked"))
    assert len(held) == 4
    for (_, end), (start, _) in itertools.pairwise(held):
        assert start >= end, held  # each began after the previous one ended
    # Waiting for the session used up no attempt: every job succeeded on its first.
    assert [job["attempts"] for job in jobs] == [1, 1, 1, 1]
    outcomes = [a["outcome"] for job_attempts in attempts for a in job_attempts]
    assert "deferred" in outcomes  # some did wait their turn
    assert outcomes.count("succeeded") == 4


async def test_an_unchanged_session_is_not_written_and_a_stale_write_is_dropped(
    sessionmaker: async_sessionmaker[AsyncSession], new_owner: NewOwner, client: httpx.AsyncClient
) -> None:
    auth = await new_owner()
    agent_id = uuid.UUID(await default_agent(client, auth))
    async with sessionmaker() as db:
        from shared.models import Agent

        agent = await db.get(Agent, agent_id)
        assert agent is not None
        owner_id = agent.owner_id
    box = SecretBox("test-secret-key")
    state = {"cookies": [{"name": "a", "value": "1", "domain": "x.test", "path": "/"}]}

    async with sessionmaker.begin() as db:
        assert await write_session(db, owner_id, agent_id, "cas", box.seal_json(state), 0)
    async with sessionmaker.begin() as db:  # a second creator loses
        assert not await write_session(db, owner_id, agent_id, "cas", box.seal_json({}), 0)
    async with sessionmaker.begin() as db:
        stored = await read_session(db, box, owner_id, agent_id, "cas")
        assert (stored.state, stored.version) == (state, 1)
        assert await write_session(db, owner_id, agent_id, "cas", box.seal_json(state), 1)
    async with sessionmaker.begin() as db:  # a job that read version 1 comes back late
        assert not await write_session(db, owner_id, agent_id, "cas", box.seal_json({}), 1)
    async with sessionmaker() as db:  # another owner reads nothing under the same ids
        other = await read_session(db, box, uuid.uuid4(), agent_id, "cas")
        assert (other.state["cookies"], other.version) == ([], 0)


async def test_a_lapsed_lock_is_taken_over_and_its_holder_cannot_release_the_new_one(
    redis_url: str, settings: Any
) -> None:
    from worker.sessions import SessionLock

    redis = Redis.from_url(redis_url)

    class State:  # what SessionLock reads of a WorkerState
        def __init__(self) -> None:
            self.redis = redis
            self.settings = settings.model_copy(update={"session_lock_s": 0.3})

    key = f"outrider:session:{{test}}:{uuid.uuid4().hex}:lock"
    try:
        first = SessionLock(State(), key, "job-a:1")  # type: ignore[arg-type]
        second = SessionLock(State(), key, "job-b:1")  # type: ignore[arg-type]
        assert await first.take()
        assert not await second.take()
        async with first.holding():  # renewed while held: still first's past its ttl
            await asyncio.sleep(0.5)
            assert not await second.take()
        assert await second.take()  # released
        await second.release()
        assert await first.take()
        await asyncio.sleep(0.5)  # first's worker died: nothing renews it, it lapses
        assert await second.take()
        await first.release()  # the dead holder's late release leaves the new one's lock
        assert await redis.get(key) == b"job-b:1"
    finally:
        await redis.delete(key)
        await redis.aclose()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("session", "", "invalid_session_name"),
        ("session", "a b", "invalid_session_name"),
        ("session", "x" * 101, "invalid_session_name"),
        ("session", "../etc", "invalid_session_name"),
        ("locale", "de_DE", "invalid_locale"),
        ("locale", "", "invalid_locale"),
        ("timezone", "Mars/Olympus", "invalid_timezone"),
        ("geolocation", {"latitude": 91, "longitude": 0}, "validation_error"),
        ("geolocation", {"latitude": 0, "longitude": 0, "accuracy": -1}, "validation_error"),
    ],
)
async def test_bad_session_locale_and_place_are_422_with_a_code(
    client: httpx.AsyncClient, auth: dict[str, str], field: str, value: Any, code: str
) -> None:
    spec = render("http://example.com/", **{field: value})
    assert_error(await client.post("/v1/jobs", json=spec, headers=auth), 422, code)


async def test_session_routes_refuse_bad_names_and_foreign_agents(
    client: httpx.AsyncClient, auth: dict[str, str], new_owner: NewOwner
) -> None:
    agent_id = await default_agent(client, auth)
    bad = await client.delete(f"/v1/agents/{agent_id}/sessions/a%20b", headers=auth)
    assert_error(bad, 422, "invalid_session_name")
    missing = await client.delete(f"/v1/agents/{agent_id}/sessions/never", headers=auth)
    assert_error(missing, 404, "not_found")
    foreign = await client.get(f"/v1/agents/{agent_id}/sessions", headers=await new_owner())
    assert_error(foreign, 404, "not_found")
    unknown = await client.delete(f"/v1/agents/{uuid.uuid4()}/sessions/s1", headers=auth)
    assert_error(unknown, 404, "not_found")
    crawl = {"kind": "crawl", "input": {"url": "http://example.com/", "session": "no way"}}
    assert_error(
        await client.post("/v1/jobs", json=crawl, headers=auth), 422, "invalid_session_name"
    )

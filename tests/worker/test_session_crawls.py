"""Sessions shared by many requests at once: a crawl's pages run concurrently in one session
(reading it without its lock), a map reads every page in it; a page's write-back never
overwrites a job that holds the session, nor another page's newer write. Real Chromium,
PostgreSQL and Redis; the members-only site (tests/worker/members_site.py) is on loopback."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.models import Agent, Job
from shared.repositories.execution import Claim
from shared.repositories.sessions import StoredSession, read_session, write_session
from shared.settings import Settings
from tests.api.support import assert_error
from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker.members_site import PASSWORD, MembersSite, serve_members_site
from tests.worker.support import submit
from tests.worker.test_browser_site import browser_worker

LOGIN = [
    {"type": "fill", "selector": "#user", "value": "alice"},
    {"type": "fill", "selector": "#pass", "value": PASSWORD},
    {"type": "click", "selector": "button"},
]


async def run(
    client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any]
) -> dict[str, Any]:
    job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=60)
    assert job["status"] == "succeeded", job
    return job


async def crawl_pages(
    client: httpx.AsyncClient, auth: dict[str, str], crawl_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/jobs/{crawl_id}/pages", params={"limit": 100, "include": "result"}, headers=auth
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def paths(site: MembersSite, urls: list[str]) -> set[str]:
    return {url.removeprefix(site.base_url) for url in urls}


async def forget_robots(redis_url: str, site: MembersSite) -> None:
    """Drop the site's robots.txt from the shared cache: the next job fetches it again."""
    from worker.robots import cache_key, robots_url

    robots = robots_url(site.url("/"))
    assert robots is not None
    redis = Redis.from_url(redis_url)
    try:
        await redis.delete(cache_key(robots))
    finally:
        await redis.aclose()


async def test_a_crawl_and_a_map_of_a_session_see_every_page_as_a_member_with_pages_in_flight(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, redis_url: str
) -> None:
    made = await client.post(
        "/v1/agents",
        json={"name": "member", "host_rate_per_s": 1000, "host_concurrency": 50},
        headers=auth,
    )
    agent_id = made.json()["id"]

    def job(kind: str, url: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "agent_id": agent_id, "input": {"url": url, **fields}}

    with serve_members_site(pages=15, delay_s=0.3) as site:
        async with browser_worker(run_worker), run_worker(concurrency=8, host_rate_per_s=0):
            login = await run(
                client,
                auth,
                job("render", site.url("/login"), session="m", actions=LOGIN, formats=["markdown"]),
            )
            crawl = await run(
                client,
                auth,
                job("crawl", site.url("/members/0"), session="m", max_depth=3, sitemap="skip"),
            )
            pages = await crawl_pages(client, auth, crawl["id"])
            peak_crawl = site.peak_members
            after = await run(client, auth, job("fetch", site.url("/members/0"), session="m"))
            await forget_robots(redis_url, site)  # the map reads robots.txt itself
            robots_before = len(site.cookies["/robots.txt"])
            mapped = await run(
                client,
                auth,
                job("map", site.url("/members/0"), session="m", max_depth=3, sitemap="skip"),
            )
            robots_by_map = site.cookies["/robots.txt"][robots_before:]
            outside = await run(
                client, auth, job("map", site.url("/members/0"), max_depth=3, sitemap="skip")
            )

    every = {f"/members/{i}" for i in range(15)}
    assert "Welcome back" in login["result"]["markdown"], login
    assert crawl["result"]["pages"]["succeeded"] == 15, crawl
    assert paths(site, [p["url"] for p in pages if p["status"] == "succeeded"]) == every
    assert all("Welcome back, member" in p["result"]["markdown"] for p in pages), pages
    # The site answered several members' pages at once: the pages did not queue for the lock.
    assert peak_crawl > 1, peak_crawl
    # The pages' `seen` cookies raced; whatever won, the login is still in the session.
    assert "Welcome back" in after["result"]["markdown"], after
    # A map reads every page in the session; without one it sees a page that links nowhere.
    assert paths(site, [u["url"] for u in mapped["result"]["urls"]]) == every
    assert paths(site, [u["url"] for u in outside["result"]["urls"]]) == {"/members/0"}
    # robots.txt is read without the session's cookies, by the pages and by the map.
    assert robots_by_map, dict(site.cookies)
    assert not any("sid=" in cookie for cookie in site.cookies["/robots.txt"])


class _State(SimpleNamespace):
    """What save_session reads of a WorkerState."""


def _page_claim(agent: Agent) -> Claim:
    """A claim of one of a crawl's pages (a job with `parent_id`) in session `shared`."""
    job = Job(
        id=uuid.uuid4(),
        owner_id=agent.owner_id,
        agent_id=agent.id,
        kind="fetch",
        input={"url": "http://127.0.0.1/", "session": "shared"},
        parent_id=uuid.uuid4(),
    )
    return Claim(job=job, agent=agent, fence=1)


async def test_a_page_never_overwrites_a_session_another_job_holds_nor_a_newer_write(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    redis_url: str,
) -> None:
    from worker.session_state import JobSession
    from worker.sessions import SessionLock, lock_key, save_session

    agents = (await client.get("/v1/agents", headers=auth)).json()["items"]
    async with sessionmaker() as db:
        agent = await db.get(Agent, uuid.UUID(agents[0]["id"]))
    assert agent is not None
    box = SecretBox("test-secret-key")
    redis = Redis.from_url(redis_url)
    state = _State(redis=redis, settings=settings, sessionmaker=sessionmaker, box=box)
    login = {"name": "sid", "value": "login", "domain": "127.0.0.1", "path": "/", "expires": -1}
    async with sessionmaker.begin() as db:
        assert await write_session(
            db, agent.owner_id, agent.id, "shared", box.seal_json({"cookies": [login]}), 0
        )

    def page_session(value: str, version: int) -> JobSession:
        session = JobSession("shared", StoredSession({"cookies": [login]}, version))
        session.replace({"cookies": [login, {**login, "name": "seen", "value": value}]})
        return session

    async def stored() -> tuple[set[str], int]:
        async with sessionmaker() as db:
            found = await read_session(db, box, agent.owner_id, agent.id, "shared")
        return {f"{c['name']}={c['value']}" for c in found.state["cookies"]}, found.version

    page = _page_claim(agent)
    holder = SessionLock(state, lock_key(page.job, "shared"), "a-login:1")  # type: ignore[arg-type]
    try:
        assert await holder.take()
        await save_session(state, page, page_session("1", 1))  # type: ignore[arg-type]
        assert await stored() == ({"sid=login"}, 1)  # the holder's session: left alone
        await holder.release()

        await save_session(state, page, page_session("2", 1))  # type: ignore[arg-type]
        assert await stored() == ({"sid=login", "seen=2"}, 2)
        assert await redis.get(lock_key(page.job, "shared")) is None  # its short lock is gone
        late = _page_claim(agent)  # another page that read version 1
        await save_session(state, late, page_session("3", 1))  # type: ignore[arg-type]
        assert await stored() == ({"sid=login", "seen=2"}, 2)
    finally:
        await redis.delete(lock_key(page.job, "shared"))
        await redis.aclose()


async def test_map_takes_a_session_in_its_schema_and_refuses_a_bad_name(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["MapInput"]["properties"]["session"]["anyOf"][0]["pattern"]
    bad = {"kind": "map", "input": {"url": "http://example.com/", "session": "no way"}}
    assert_error(await client.post("/v1/jobs", json=bad, headers=auth), 422, "invalid_session_name")
    good = {"kind": "map", "input": {"url": "http://example.com/", "session": "ok.1"}}
    accepted = await client.post("/v1/jobs", json=good, headers=auth)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["input"]["session"] == "ok.1"

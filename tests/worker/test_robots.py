"""robots.txt as a user sees it: disallowed pages fail untouched, Crawl-delay paces, agents may
opt out, 4xx allows all, 5xx holds off, `http` API calls never look, and a long file is read
(dripped in pieces) up to 500 KiB.

The runner's robots check does not depend on the engine, so `fetch` jobs here run a minimal
engine (one GET) in place of the real one.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.egress import EgressPolicy
from shared.models import Agent
from shared.settings import Settings
from tests.adversarial.drip import DripServer, Reply, start_drip_server
from tests.conftest import RunWorker
from tests.helpers import http_job, wait_for_job
from tests.worker.support import submit
from tests.worker.test_politeness import JITTER_S, UNLIMITED, create_agent, stamped_server
from worker.engines.base import EngineContext, check_destination
from worker.http_client import create_session
from worker.retry import JobError
from worker.robots import ROBOTS_MAX_BYTES, RobotsCache, RobotsFile, cache_key, check_robots
from worker.runner import ENGINES

PRIVATE = "User-agent: *\nDisallow: /private\n"


async def one_get(ctx: EngineContext) -> dict[str, Any]:
    async with ctx.http.get(check_destination(ctx, ctx.job.input["url"])) as response:
        return {"status": response.status}


@pytest.fixture(autouse=True)
def fetch_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "fetch", one_get)


def fetch_job(url: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "fetch", "input": {"url": url}, **spec}


async def test_a_disallowed_page_fails_without_being_requested(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with stamped_server(robots=PRIVATE) as site, run_worker(**UNLIMITED):
        denied = await submit(client, auth, fetch_job(site.url("/private/a")))
        allowed = await submit(client, auth, fetch_job(site.url("/public")))
        denied_job = await wait_for_job(client, auth, denied)
        allowed_job = await wait_for_job(client, auth, allowed)

    assert denied_job["status"] == "failed"
    assert denied_job["error"]["code"] == "robots_disallowed"
    assert denied_job["error"]["retryable"] is False
    assert denied_job["error"]["details"]["robots_url"] == site.url("/robots.txt")
    assert denied_job["attempts"] == 1
    assert allowed_job["status"] == "succeeded"
    assert site.count("/private") == 0
    assert site.count("/public") == 1
    assert site.count("/robots.txt") == 1, "the file is cached, not fetched per job"


async def test_crawl_delay_paces_the_agents_requests(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    robots = "User-agent: *\nCrawl-delay: 1\n"
    async with stamped_server(robots=robots) as site, run_worker(**UNLIMITED):
        ids = [await submit(client, auth, fetch_job(site.url(f"/p{n}"))) for n in range(3)]
        jobs = [await wait_for_job(client, auth, job_id) for job_id in ids]

    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 3
    arrivals = site.times("/p")
    assert len(arrivals) == 3
    # Paced at 1 s (a late request may sit closer to the next), not sent at once.
    assert arrivals[-1] - arrivals[0] >= 2.0 - JITTER_S, arrivals
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.5, arrivals


async def test_one_host_spelled_several_ways_has_one_robots_txt_and_pace(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    robots = "User-agent: *\nCrawl-delay: 1\nDisallow: /private\n"
    async with stamped_server(robots=robots) as site, run_worker(**UNLIMITED):
        port = site.base_url.rsplit(":", 1)[1]
        spellings = ["127.0.0.1", "127.1", "2130706433", "[::ffff:7f00:1]"]
        urls = [f"http://{spelling}:{port}/p{n}" for n, spelling in enumerate(spellings)]
        ids = [await submit(client, auth, fetch_job(url)) for url in urls]
        denied = await submit(client, auth, fetch_job(f"http://127.1:{port}/private/a"))
        jobs = [await wait_for_job(client, auth, job_id) for job_id in ids]
        denied_job = await wait_for_job(client, auth, denied)

    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 4
    assert site.count("/robots.txt") == 1, "one robots.txt per host, however it is written"
    assert denied_job["error"]["code"] == "robots_disallowed"
    assert site.count("/private") == 0
    arrivals = site.times("/p")
    assert len(arrivals) == 4
    # The Crawl-delay paces the host, not each spelling of it.
    assert arrivals[-1] - arrivals[0] >= 3.0 - JITTER_S, arrivals
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.5, arrivals


async def test_rules_for_the_agents_user_agent_apply(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    robots = "User-agent: outrider\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    other = await create_agent(client, auth, user_agent="OtherBot/2.0")
    async with stamped_server(robots=robots) as site, run_worker(**UNLIMITED):
        ours = await submit(client, auth, fetch_job(site.url("/a")))
        theirs = await submit(client, auth, fetch_job(site.url("/b"), agent_id=other))
        ours_job = await wait_for_job(client, auth, ours)
        theirs_job = await wait_for_job(client, auth, theirs)

    assert ours_job["error"]["code"] == "robots_disallowed"  # "Outrider/0.1" by default
    assert ours_job["error"]["details"]["user_agent"].startswith("Outrider")
    assert theirs_job["status"] == "succeeded"
    assert (site.count("/a"), site.count("/b")) == (0, 1)


async def test_an_agent_may_opt_out(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    agent_id = await create_agent(client, auth)
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Agent).where(Agent.id == uuid.UUID(agent_id)).values(obey_robots=False)
        )
    async with stamped_server(robots="User-agent: *\nDisallow: /\n") as site, run_worker():
        job_id = await submit(client, auth, fetch_job(site.url("/x"), agent_id=agent_id))
        job = await wait_for_job(client, auth, job_id)

    assert job["status"] == "succeeded"
    assert site.count("/x") == 1
    assert site.count("/robots.txt") == 0


async def test_http_api_calls_ignore_robots(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with stamped_server(robots="User-agent: *\nDisallow: /\n") as site, run_worker():
        job = await wait_for_job(client, auth, await submit(client, auth, http_job(site.url("/x"))))

    assert job["status"] == "succeeded"
    assert site.count("/robots.txt") == 0


async def test_a_4xx_robots_allows_everything(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with stamped_server(robots=None) as site, run_worker():
        job = await wait_for_job(
            client, auth, await submit(client, auth, fetch_job(site.url("/x")))
        )

    assert job["status"] == "succeeded"
    assert site.count("/robots.txt") == 1


async def test_a_5xx_robots_holds_off_without_touching_the_page(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with stamped_server(robots="oops", robots_status=503) as site, run_worker():
        spec = fetch_job(site.url("/x"), max_attempts=1)
        job = await wait_for_job(client, auth, await submit(client, auth, spec))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "robots_unavailable"
    assert job["error"]["retryable"] is True
    assert site.count("/x") == 0


async def test_a_cached_copy_outlives_a_server_error(settings: Settings, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    http = create_session(EgressPolicy.from_settings(settings))
    try:
        async with stamped_server(robots="down", robots_status=500) as site:
            robots = site.url("/robots.txt")
            stale = RobotsFile("rules", PRIVATE, time.time() - settings.robots_cache_ttl_s - 1)
            await redis.set(cache_key(robots), stale.dumps())
            cache = RobotsCache(redis, http, settings)

            assert await check_robots(cache, site.url("/public"), "Outrider/0.1") is None
            with pytest.raises(JobError) as denied:
                await check_robots(cache, site.url("/private"), "Outrider/0.1")
            assert denied.value.code == "robots_disallowed"
            assert site.count("/robots.txt") == 1, "the failure is remembered, not retried"
    finally:
        await http.close()
        await redis.aclose()


def test_robots_file_round_trips() -> None:
    original = RobotsFile("rules", PRIVATE, 1.5)
    assert RobotsFile.loads(original.dumps()) == original
    assert RobotsFile.loads(b"{not json") is None


def filler_rules(start: int, size: int) -> str:
    """Disallow lines for /filler/<n>, `size` bytes of them (about), numbered from `start`."""
    lines = [f"Disallow: /filler/{n:08d}\n" for n in range(start, start + size // 27 + 1)]
    return "".join(lines)


async def robots_outcomes(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    robots: str,
    paths: list[str],
) -> tuple[dict[str, str], DripServer]:
    """Serve `robots` in small pieces (chunked), fetch each path; its job's status, or the
    error code when it failed."""
    async with start_drip_server(seed=len(robots), max_piece=4096) as site:
        site.add("/robots.txt", Reply(robots.encode(), framing="chunked"))
        ids = [await submit(client, auth, fetch_job(site.url(path))) for path in paths]
        async with run_worker(**UNLIMITED):
            jobs = [await wait_for_job(client, auth, job_id) for job_id in ids]
    found = {
        path: job["error"]["code"] if job["status"] == "failed" else job["status"]
        for path, job in zip(paths, jobs, strict=True)
    }
    return found, site


async def test_the_last_line_of_a_100_kb_robots_txt_is_obeyed(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    robots = "User-agent: *\n" + filler_rules(0, 100 * 1000) + "Disallow: /secret\n"
    assert len(robots) > 100 * 1000
    paths = ["/secret/plans", "/filler/00000007", "/open"]
    found, site = await robots_outcomes(client, auth, run_worker, robots, paths)

    assert found == {
        "/secret/plans": "robots_disallowed",
        "/filler/00000007": "robots_disallowed",
        "/open": "succeeded",
    }
    assert (site.hits["/secret/plans"], site.hits["/open"], site.hits["/robots.txt"]) == (0, 1, 1)


async def test_a_600_kb_robots_txt_is_read_to_500_kib(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    head = "User-agent: *\nDisallow: /early\n"
    head += filler_rules(0, ROBOTS_MAX_BYTES - len(head) - 200)
    # A line across the limit: its first half alone would disallow /str...
    straddle = "Disallow: /strait-is-the-gate\n"
    head += "#" * (ROBOTS_MAX_BYTES - len(head) - len("Disallow: /str")) + "\n"
    robots = head + straddle + filler_rules(10**6, 100 * 1000) + "Disallow: /late\n"
    assert robots.index(straddle) < ROBOTS_MAX_BYTES < robots.index(straddle) + len(straddle)
    assert len(robots) > 600 * 1000
    paths = ["/early/a", "/filler/00000100", "/late/b", "/strong", "/filler/01000100"]
    found, _ = await robots_outcomes(client, auth, run_worker, robots, paths)

    assert found == {
        "/early/a": "robots_disallowed",  # before the limit: applied
        "/filler/00000100": "robots_disallowed",
        "/late/b": "succeeded",  # past it: not read
        "/strong": "succeeded",  # the cut line is dropped, not read as `Disallow: /str`
        "/filler/01000100": "succeeded",
    }

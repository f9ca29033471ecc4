"""Per-host politeness as a user sees it: a host's rate and concurrency hold across workers,
waiting never uses up an attempt, and a 429's Retry-After slows every job to that host.

The target here stamps each request's arrival. Grants are paced exactly on Redis' clock (burst
1: one request per 1/rate s, so at most `rate` per second); a request sent late (a busy event
loop) can arrive next to the following one, so arrival checks allow the burst size on top:
at most rate + 1 in any 1 s window, and a whole run no shorter than the rate demands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import RunWorker
from tests.helpers import http_job, serve_aiohttp, wait_for_job
from tests.worker.support import attempts_of, eventually, submit

JITTER_S = 0.2
BURST = 1  # OUTRIDER_HOST_BURST's default
UNLIMITED = {"host_rate_per_s": 0, "host_concurrency": 0}


def max_in_window(times: list[float], window_s: float) -> int:
    """The most arrivals inside any closed window of `window_s`."""
    return max(sum(1 for t in times if start <= t <= start + window_s) for start in times)


@dataclass
class StampedServer:
    """A loopback server that records (path, arrival) of every request. Routes: /robots.txt
    (`robots`, `robots_status`), /slow (0.4 s), /retry-after/{key}?s=N (429 once), else 200."""

    robots: str | None = None
    robots_status: int = 200
    base_url: str = ""
    requests: list[tuple[str, float]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def url(self, path: str) -> str:
        return self.base_url + path

    def times(self, prefix: str) -> list[float]:
        return sorted(t for path, t in self.requests if path.startswith(prefix))

    def count(self, prefix: str) -> int:
        return len(self.times(prefix))


def _app(site: StampedServer) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        site.requests.append((request.path, time.monotonic()))
        if request.path == "/robots.txt":
            if site.robots is None:
                return web.Response(status=404)
            return web.Response(status=site.robots_status, text=site.robots)
        if request.path.startswith("/retry-after/") and site.count(request.path) == 1:
            headers = {"Retry-After": request.query.get("s", "1")}
            return web.Response(status=429, headers=headers, text="slow down")
        if request.path == "/slow":
            site.in_flight += 1
            site.max_in_flight = max(site.max_in_flight, site.in_flight)
            try:
                await asyncio.sleep(0.4)
            finally:
                site.in_flight -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def stamped_server(
    robots: str | None = None, robots_status: int = 200, host: str = "127.0.0.1"
) -> AsyncIterator[StampedServer]:
    site = StampedServer(robots=robots, robots_status=robots_status)
    async with serve_aiohttp(_app(site), host) as url:
        site.base_url = url
        yield site


async def create_agent(client: httpx.AsyncClient, auth: dict[str, str], **profile: Any) -> str:
    body = {"name": f"agent-{uuid.uuid4().hex[:8]}", **profile}
    response = await client.post("/v1/agents", json=body, headers=auth)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def submit_batch(
    client: httpx.AsyncClient, auth: dict[str, str], specs: list[dict[str, Any]]
) -> list[str]:
    response = await client.post("/v1/jobs/batch", json={"jobs": specs}, headers=auth)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


async def outcomes(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> list[str]:
    return [a["outcome"] for a in await attempts_of(client, auth, job_id)]


async def test_an_agents_host_rate_holds_across_two_workers(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    rate, count = 2, 40
    agent_id = await create_agent(client, auth, host_rate_per_s=rate)
    async with stamped_server() as site:
        specs = [{**http_job(site.url(f"/ok?n={n}")), "agent_id": agent_id} for n in range(count)]
        # The default is no limit: only the agent's own rate can pace these jobs.
        async with run_worker(concurrency=10, **UNLIMITED), run_worker(concurrency=10, **UNLIMITED):
            ids = await submit_batch(client, auth, specs)
            jobs = [await wait_for_job(client, auth, job_id, timeout_s=45) for job_id in ids]

    assert [job["status"] for job in jobs] == ["succeeded"] * count
    assert {job["attempts"] for job in jobs} == {1}, "waiting for the host used up attempts"
    arrivals = site.times("/ok")
    assert len(arrivals) == count
    # Never a burst: two workers each pacing on their own would show 4+ in a second...
    assert max_in_window(arrivals, 1.0) <= rate + BURST, arrivals
    # ...and the whole run took as long as the shared rate demands.
    assert arrivals[-1] - arrivals[0] >= (count - 1) / rate - JITTER_S
    deferred = [await outcomes(client, auth, job_id) for job_id in ids]
    assert sum(o.count("deferred") for o in deferred) > 0, "no job was ever made to wait"
    assert all(o[-1] == "succeeded" for o in deferred)


async def test_host_concurrency_is_shared_by_workers(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    agent_id = await create_agent(client, auth, host_concurrency=1)
    async with stamped_server() as site:
        specs = [{**http_job(site.url("/slow")), "agent_id": agent_id} for _ in range(4)]
        async with run_worker(concurrency=5, **UNLIMITED), run_worker(concurrency=5, **UNLIMITED):
            ids = await submit_batch(client, auth, specs)
            jobs = [await wait_for_job(client, auth, job_id, timeout_s=30) for job_id in ids]

    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 4
    assert site.count("/slow") == 4
    assert site.max_in_flight == 1


# One loopback host written the ways a job's URL may write it (the egress policy accepts each).
SPELLINGS = {
    "127.0.0.1": ["127.0.0.1", "127.1", "2130706433", "[::ffff:127.0.0.1]"],
    "::1": ["[::1]", "[0:0:0:0:0:0:0:1]", "[0::1]", "[::0:1]"],
}


@pytest.mark.parametrize("listen", list(SPELLINGS))
async def test_one_host_spelled_several_ways_has_one_slot(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, listen: str
) -> None:
    agent_id = await create_agent(client, auth, host_concurrency=1)
    async with stamped_server(host=listen) as site:
        port = site.base_url.rsplit(":", 1)[1]
        urls = [f"http://{spelling}:{port}/slow" for spelling in SPELLINGS[listen]]
        specs = [{**http_job(url), "agent_id": agent_id} for url in urls]
        async with run_worker(concurrency=5, **UNLIMITED):
            ids = await submit_batch(client, auth, specs)
            jobs = [await wait_for_job(client, auth, job_id, timeout_s=30) for job_id in ids]

    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 4
    assert site.count("/slow") == 4
    assert site.max_in_flight == 1, "two spellings of the host were two gates"


async def test_a_429_retry_after_slows_every_job_to_that_host(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    # Retry-After above 2 s: a shorter one is absorbed by the in-attempt quick retry, which
    # the runner (and so the host's backoff) never sees.
    async with stamped_server() as site, run_worker(**UNLIMITED):
        first = await submit(client, auth, http_job(site.url("/retry-after/a?s=3")))

        async def backed_off() -> bool:
            return "retrying" in await outcomes(client, auth, first)

        await eventually(backed_off, 10, "the 429 recorded")
        slowed_at = site.times("/retry-after/a")[0]
        others = [await submit(client, auth, http_job(site.url(f"/ok?n={n}"))) for n in range(3)]
        jobs = [await wait_for_job(client, auth, job_id) for job_id in [first, *others]]

    assert [job["status"] for job in jobs] == ["succeeded"] * 4
    assert [job["attempts"] for job in jobs] == [2, 1, 1, 1]
    assert site.count("/retry-after/a") == 2
    assert all(t >= slowed_at + 3.0 for t in site.times("/ok")), (slowed_at, site.requests)
    for job_id in others:
        assert "deferred" in await outcomes(client, auth, job_id)

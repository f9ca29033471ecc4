"""When proxies fail: which are benched (for OUTRIDER_PROXY_BENCH_S, by every worker), whom a
proxy's "cannot reach it" blames (worker/proxies.py), and what the job ends with. Real
tinyproxy and microsocks on loopback, and scripted broken proxies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunWorker
from tests.helpers import TargetServer
from tests.worker.proxy_servers import (
    NEEDS_PROXY_TOOLS,
    RecordingSite,
    microsocks,
    recording_site,
    tinyproxy,
)
from tests.worker.proxy_support import (
    SOURCE_A,
    SOURCE_B,
    SOURCE_SOCKS,
    bench_key,
    bench_keys,
    password,
    proxied_agent,
    proxied_job,
    proxy_of,
    run_jobs,
    workers,
)
from tests.worker.support import closed_port

pytestmark = NEEDS_PROXY_TOOLS


@pytest.fixture
async def site() -> AsyncIterator[RecordingSite]:
    async with recording_site() as recording:
        yield recording


async def test_every_proxy_failing_ends_the_job_proxy_unavailable(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
    tmp_path: Path,
) -> None:
    async with tinyproxy(tmp_path, SOURCE_A, f"alice:{password()}") as guarded:
        agent_id = await proxied_agent(
            client,
            auth,
            [
                (f"http://127.0.0.1:{closed_port()}", None),  # nothing listens: connect error
                (guarded.url, "alice:not-the-password"),  # 407
            ],
        )
        spec = proxied_job("fetch", agent_id, site.url("/page/x"), attempts=1)
        async with workers(run_worker, browser=False):
            (job,) = await run_jobs(client, auth, [spec])
            (again,) = await run_jobs(client, auth, [spec])  # both benched: none tried
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "proxy_unavailable"
    assert job["error"]["retryable"] is True
    assert again["error"]["code"] == "proxy_unavailable"
    assert site.visits == []
    assert len(await bench_keys(proxy_redis)) == 2
    assert "not-the-password" not in str(job) + str(again)


@contextlib.asynccontextmanager
async def failing_proxy(status_line: bytes) -> AsyncIterator[str]:
    """A 'proxy' that answers every CONNECT with `status_line` (a broken upstream)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_a_5xx_from_the_proxy_benches_it_and_a_5xx_from_the_target_does_not(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    target: TargetServer,
    tmp_path: Path,
) -> None:
    async with (
        failing_proxy(b"HTTP/1.1 502 Bad Gateway") as broken,
        tinyproxy(tmp_path, SOURCE_B) as good,
    ):
        # round robin: of two jobs in a row, one tries the broken proxy first
        agent_id = await proxied_agent(client, auth, [(broken, None), (good.url, None)])
        specs = [
            proxied_job("fetch", agent_id, target.url("/ok")),
            proxied_job("fetch", agent_id, target.url("/ok")),
            proxied_job("http", agent_id, target.url("/status/503"), attempts=1),
        ]
        async with workers(run_worker, browser=False):
            jobs = await run_jobs(client, auth, specs)
            benched = await bench_keys(proxy_redis)
    assert [proxy_of(job) for job in jobs[:2]] == [good.url] * 2
    assert jobs[2]["error"]["code"] == "http_503"  # the target's answer, through the tunnel
    assert benched == [bench_key(agent_id, broken)]


async def test_a_render_whose_proxy_fails_in_the_browser_moves_on_to_the_next(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
    tmp_path: Path,
) -> None:
    """Without robots.txt the first connection is Chromium's, through the door: the door's
    tunnel through the dead proxy fails, and the job benches it and renders through the next."""
    dead = f"http://127.0.0.1:{closed_port()}"
    async with tinyproxy(tmp_path, SOURCE_B) as good:
        agent_id = await proxied_agent(
            client, auth, [(dead, None), (good.url, None)], obey_robots=False
        )
        kinds: list[tuple[str, dict[str, Any]]] = [
            ("render", {}),
            ("render", {}),
            ("scrape", {"render": "browser"}),
        ]
        specs = [
            proxied_job(kind, agent_id, site.url(f"/page/{n}"), **more)
            for n, (kind, more) in enumerate(kinds)
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
            benched = await bench_keys(proxy_redis)
    assert [proxy_of(job) for job in jobs] == [good.url] * 3
    assert benched == [bench_key(agent_id, dead)]
    assert site.clients() == {SOURCE_B}
    assert "/robots.txt" not in {visit.path for visit in site.visits}


async def test_a_dead_target_benches_no_proxy_and_fails_with_the_targets_error(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
    tmp_path: Path,
) -> None:
    """tinyproxy answers CONNECT to a dead target 500, microsocks "connection refused": each
    tries, neither is benched, the job fails `connection_error` as it would without a proxy;
    and the proxies then serve a live target."""
    credentials = f"sam:{password()}"
    async with (
        tinyproxy(tmp_path, SOURCE_A) as http_proxy,
        microsocks(SOURCE_SOCKS, credentials) as socks,
    ):
        agent_id = await proxied_agent(
            client, auth, [(http_proxy.url, None), (socks.url, credentials)]
        )
        dead = f"http://127.0.0.1:{closed_port()}"
        kinds = ["http", "fetch", "render", "http", "fetch"]
        specs = [
            proxied_job(kind, agent_id, f"{dead}/{n}", attempts=1) for n, kind in enumerate(kinds)
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs)
            benched = await bench_keys(proxy_redis)
            alive = await run_jobs(
                client,
                auth,
                [proxied_job("fetch", agent_id, site.url(f"/page/{n}")) for n in range(4)],
            )
    assert [job["error"]["code"] for job in jobs] == ["connection_error"] * 5, jobs
    assert all(job["error"]["retryable"] for job in jobs)
    assert benched == []
    assert {proxy_of(job) for job in alive} == {http_proxy.url, socks.url}
    assert site.clients() == {SOURCE_A, SOURCE_SOCKS}


async def test_a_proxy_that_says_every_target_is_unreachable_is_benched_once_another_reaches_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    proxy_redis: str,
    site: RecordingSite,
    tmp_path: Path,
) -> None:
    """A broken proxy answers 500 to every CONNECT: as soon as the good proxy reaches the same
    target (even with a 404 from it), the broken one is blamed and benched."""
    async with (
        failing_proxy(b"HTTP/1.1 500 Unable to connect") as broken,
        tinyproxy(tmp_path, SOURCE_B) as good,
    ):
        agent_id = await proxied_agent(client, auth, [(broken, None), (good.url, None)])
        spec = proxied_job("http", agent_id, site.url("/missing"), attempts=1)
        async with workers(run_worker, browser=False):
            (job,) = await run_jobs(client, auth, [spec])  # round robin: the broken one first
            benched = await bench_keys(proxy_redis)
    assert (job["error"]["code"], job["error"]["details"]["status"]) == ("http_4xx", 404), job
    assert benched == [bench_key(agent_id, broken)]
    assert site.clients() == {SOURCE_B}

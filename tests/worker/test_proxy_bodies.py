"""Whole bodies THROUGH proxy tunnels: `http` and `fetch` jobs (and a render) via tinyproxy
(HTTP CONNECT) and microsocks (SOCKS5) read every byte the target sent, whatever the size (1
byte, the cap, one past it, megabytes), the pacing (all at once, or dripped in small pieces
with pauses), the framing (Content-Length, chunked, the connection's close) and the coding
(identity, gzip, deflate, br); past the cap the documented outcome (`http`: exactly the cap,
`body_truncated`; `fetch`: `response_too_large`), never a silent cut.

The target is a raw-socket server (tests/adversarial/drip.py) that records who connected: only
the proxies did. Bodies and pacing come from a seeded generator: OUTRIDER_TEST_SEED replays a
failure (the seed is in every assertion message).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.drip import CODINGS, FRAMINGS, Coding, Framing, Reply
from tests.conftest import RunWorker
from tests.worker.proxy_servers import (
    NEEDS_PROXY_TOOLS,
    PeerDripServer,
    microsocks,
    start_peer_drip_server,
    tinyproxy,
)
from tests.worker.proxy_support import (
    SOURCE_A,
    SOURCE_SOCKS,
    password,
    proxied_agent,
    proxy_of,
    run_jobs,
    workers,
)
from tests.worker.test_bodies import random_text

pytestmark = NEEDS_PROXY_TOOLS

SEED = int(os.environ.get("OUTRIDER_TEST_SEED") or random.randrange(2**32))
CAP = 64 * 1024
MB = 1000 * 1000
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Agents:
    """One agent per proxy (same owner): tinyproxy (CONNECT, open) and microsocks (SOCKS5,
    username and password)."""

    connect: str
    socks: str
    connect_url: str
    socks_url: str

    def each(self) -> list[tuple[str, str]]:
        return [(self.connect, self.connect_url), (self.socks, self.socks_url)]


@pytest.fixture
async def agents(
    client: httpx.AsyncClient, auth: dict[str, str], proxy_redis: str, tmp_path: Path
) -> AsyncIterator[Agents]:
    credentials = f"sam:{password()}"
    async with (
        tinyproxy(tmp_path, SOURCE_A) as http_proxy,
        microsocks(SOURCE_SOCKS, credentials) as socks,
    ):
        yield Agents(
            connect=await proxied_agent(client, auth, [(http_proxy.url, None)]),
            socks=await proxied_agent(client, auth, [(socks.url, credentials)]),
            connect_url=http_proxy.url,
            socks_url=socks.url,
        )


@dataclass(frozen=True)
class Case:
    """One body, how it is sent, and the job that asks for it."""

    kind: str  # http or fetch
    agent: str
    proxy: str
    body: bytes
    framing: Framing
    coding: Coding
    dripped: bool
    url: str

    def __str__(self) -> str:
        pacing = "dripped" if self.dripped else "at once"
        return (
            f"seed {SEED}: {self.kind} via {self.proxy}, {len(self.body)} bytes, "
            f"{self.framing}, {self.coding}, {pacing}"
        )

    def spec(self) -> dict[str, Any]:
        job_input: dict[str, Any] = {"url": self.url}
        if self.kind == "fetch":
            job_input["formats"] = ["raw_html"]
        return {"kind": self.kind, "agent_id": self.agent, "max_attempts": 1, "input": job_input}


@contextlib.asynccontextmanager
async def two_sites() -> AsyncIterator[tuple[PeerDripServer, PeerDripServer]]:
    """The same kind of target twice: one sends each body in one write, one drips it."""
    async with (
        start_peer_drip_server(SEED, max_piece=1 << 30, max_pause_s=0) as at_once,
        start_peer_drip_server(SEED, max_piece=1024, max_pause_s=0.01) as dripped,
    ):
        yield at_once, dripped


def assert_whole(case: Case, job: dict[str, Any], cap: int) -> None:
    """Every byte the target sent, or the cap's documented outcome; never a silent cut."""
    assert proxy_of(job) == case.proxy if job["status"] == "succeeded" else True, str(case)
    if case.kind == "fetch":
        if len(case.body) > cap:
            assert job["status"] == "failed", f"{case}: {job.get('result', {}).keys()}"
            assert job["error"]["code"] == "response_too_large", str(case)
            return
        assert job["status"] == "succeeded", f"{case}: {job.get('error')}"
        got = job["result"]["raw_html"].encode()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(case.body).hexdigest(), (
            f"{case}: {len(got)} bytes back"
        )
        return
    assert job["status"] == "succeeded", f"{case}: {job.get('error')}"
    result = job["result"]
    kept = case.body[:cap]
    assert (result["body_bytes"], result["body_truncated"]) == (len(kept), len(case.body) > cap), (
        str(case)
    )
    assert result["body"] == kept.decode("utf-8", "replace"), str(case)


def make_cases(
    agents: Agents,
    sites: tuple[PeerDripServer, PeerDripServer],
    sizes: list[int],
    combos: list[tuple[Framing, Coding, bool]],
    rng: random.Random,
) -> list[Case]:
    cases: list[Case] = []
    for kind in ("http", "fetch"):
        for agent, proxy in agents.each():
            for size in sizes:
                for framing, coding, dripped in combos:
                    body = random_text(rng, size)
                    site = sites[1] if dripped else sites[0]
                    path = f"/{kind}/{len(cases)}"
                    url = site.add(path, Reply(body, TEXT, framing, coding))
                    cases.append(Case(kind, agent, proxy, body, framing, coding, dripped, url))
    return cases


async def test_one_byte_the_cap_and_one_past_it_in_every_framing_coding_and_pacing(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, agents: Agents
) -> None:
    rng = random.Random(SEED)
    # Every framing with every coding; each pacing meets every framing and every coding.
    combos = [
        (framing, coding, (f + c) % 2 == 1)
        for f, framing in enumerate(FRAMINGS)
        for c, coding in enumerate(CODINGS)
    ]
    async with two_sites() as sites:
        cases = make_cases(agents, sites, [1, CAP, CAP + 1], combos, rng)
        async with workers(run_worker, browser=False, result_max_bytes=CAP, fetch_max_bytes=CAP):
            jobs = await run_jobs(client, auth, [case.spec() for case in cases], timeout_s=120)
    for case, job in zip(cases, jobs, strict=True):
        assert_whole(case, job, CAP)
    for site in sites:  # nothing came straight from the worker (127.0.0.1)
        assert site.peers == {SOURCE_A, SOURCE_SOCKS}, f"seed {SEED}: {site.peers}"


async def test_megabytes_come_back_whole_at_once_and_dripped(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, agents: Agents
) -> None:
    rng = random.Random(SEED + 1)
    combos: list[tuple[Framing, Coding, bool]] = [
        ("length", "identity", False),
        ("chunked", "gzip", True),
        ("close", "deflate", True),
        ("length", "br", True),
        ("chunked", "identity", False),
        ("close", "gzip", False),
    ]
    cap = 4 * 1024 * 1024
    async with two_sites() as sites:
        cases = make_cases(agents, sites, [3 * MB], combos, rng)
        async with workers(run_worker, browser=False, result_max_bytes=cap, fetch_max_bytes=cap):
            jobs = await run_jobs(client, auth, [case.spec() for case in cases], timeout_s=180)
    for case, job in zip(cases, jobs, strict=True):
        assert_whole(case, job, cap)


async def test_a_render_of_a_large_dripped_page_through_each_proxy(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker, agents: Agents
) -> None:
    rng = random.Random(SEED + 2)
    # Hex text: what Chromium serializes back exactly as it came (no entities to escape).
    paragraphs = [rng.randbytes(2000).hex() for _ in range(200)]  # 800 KB of text
    html = "<html><head><title>big</title></head><body>"
    html += "".join(f"<p>{text}</p>" for text in paragraphs) + "</body></html>"
    async with start_peer_drip_server(SEED, max_piece=2048, max_pause_s=0.005) as site:
        url_gzip = site.add("/big.html", Reply(html.encode(), "text/html", "chunked", "gzip"))
        url_close = site.add("/big-close.html", Reply(html.encode(), "text/html", "close", "br"))
        specs = [
            {
                "kind": "render",
                "agent_id": agent,
                "input": {"url": url, "formats": ["html"]},
            }
            for (agent, _), url in zip(agents.each(), (url_gzip, url_close), strict=True)
        ]
        async with workers(run_worker):
            jobs = await run_jobs(client, auth, specs, timeout_s=120)
    for job, (_, proxy) in zip(jobs, agents.each(), strict=True):
        assert proxy_of(job) == proxy, f"seed {SEED}"
        rendered = job["result"]["html"]
        missing = [n for n, text in enumerate(paragraphs) if f"<p>{text}</p>" not in rendered]
        assert missing == [], f"seed {SEED} via {proxy}: {len(missing)} paragraphs missing"
    assert site.peers == {SOURCE_A, SOURCE_SOCKS}, f"seed {SEED}: {site.peers}"

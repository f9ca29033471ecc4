"""The browser's life: a crash mid-job, recycling, and no Chromium process left behind, ever
(a worker stopped in-process, a worker process SIGTERMed, a worker process SIGKILLed)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import RunWorker
from tests.e2e.cluster import process_env
from tests.e2e.processes import outrider_command, spawn
from tests.faults.redis_server import RedisServer
from tests.helpers import wait_for_job
from tests.worker.support import attempts_of, eventually, submit
from tests.worker.test_browser_site import (
    Site,
    browser_pids,
    browser_worker,
    chromium_processes,
    render_job,
    serve_site,
)
from worker.browser_processes import Tree, reap_chromium

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serve_site() as served:
        yield served


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A Redis of this test's own: a worker killed here cannot leave a lock (the reconciler's)
    in the suite's Redis for the tests after it."""
    server = RedisServer(tmp_path)
    await server.start()
    yield server.url
    server.kill()


async def render(client: httpx.AsyncClient, auth: dict[str, str], url: str) -> dict[str, Any]:
    job = await wait_for_job(
        client, auth, await submit(client, auth, render_job(url)), timeout_s=30
    )
    assert job["status"] == "succeeded", job
    return job


async def test_a_browser_crash_mid_job_is_retried_and_the_worker_stays_up(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    async with browser_worker(run_worker):
        job_id = await submit(client, auth, render_job(site.url("/slow?s=2")))

        async def loading() -> bool:
            return site.hits["/slow"] == 1

        await eventually(loading, 20, "the page is loading")
        (crashed,) = browser_pids()
        psutil.Process(crashed).kill()  # the browser dies under the running job
        job = await wait_for_job(client, auth, job_id, timeout_s=30)
        attempts = await attempts_of(client, auth, job_id)
        relaunched = browser_pids()
        after = await render(client, auth, site.url("/js"))  # the worker carries on

    assert job["status"] == "succeeded", job
    assert [(a["outcome"], a["error_code"]) for a in attempts] == [
        ("retrying", "browser_crashed"),
        ("succeeded", None),
    ]
    assert site.hits["/slow"] == 2
    assert len(relaunched) == 1
    assert crashed not in relaunched
    assert "made by script" in after["result"]["raw_html"]
    assert chromium_processes(zombies=True) == []


async def test_the_browser_is_recycled_after_n_pages(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    seen: list[set[int]] = []
    async with browser_worker(run_worker, browser_recycle_pages=2):
        for _ in range(3):
            await render(client, auth, site.url("/js"))
            seen.append(browser_pids())

    first, retired, second = seen
    assert len(first) == 1
    assert retired == set()  # closed as soon as its second page was done
    assert len(second) == 1
    assert first != second


async def test_the_browser_is_recycled_past_its_memory_ceiling(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    async with browser_worker(run_worker, browser_max_rss_mb=64):  # Chromium needs more
        await eventually(lambda: asyncio.sleep(0, bool(browser_pids())), 20, "a browser")
        launched = browser_pids()
        await render(client, auth, site.url("/js"))
        after_one = browser_pids()
        await render(client, auth, site.url("/js"))

    assert len(launched) == 1
    assert after_one == set()
    assert browser_pids() == set()


async def test_a_job_costs_the_browser_one_renderer_and_playwrights_settings_hold(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    async with browser_worker(run_worker):
        job_id = await submit(client, auth, render_job(site.url("/spa?ms=1500")))
        await eventually(lambda: asyncio.sleep(0, site.hits["/spa"] == 1), 20, "the page loads")
        await asyncio.sleep(0.5)  # settling: the app has not rendered yet
        (browser,) = browser_pids()
        renderers = [p for p in chromium_processes() if "--type=renderer" in p.cmdline()]
        command_line = psutil.Process(browser).cmdline()
        job = await wait_for_job(client, auth, job_id, timeout_s=30)

    assert job["status"] == "succeeded", job
    # No spare renderer for a next navigation, no omnibox popup WebUI: the page's own only.
    assert len(renderers) == 1, [p.cmdline()[:3] for p in renderers]  # was 3 per job
    disabled = [
        a.split("=", 1)[1].split(",") for a in command_line if a.startswith("--disable-features=")
    ]
    assert len(disabled) == 2  # Playwright's, then Outrider's: Chromium reads only the last
    assert set(disabled[0]) <= set(disabled[1])  # what Playwright turns off stays off


async def test_no_chromium_process_is_left_after_the_worker_stops(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    before = chromium_processes(zombies=True)
    async with browser_worker(run_worker):
        await render(client, auth, site.url("/js"))
        during = chromium_processes()

    assert before == []
    assert len(during) >= 3  # browser, zygote, renderer, ...
    assert chromium_processes(zombies=True) == []  # none running, none unreaped
    assert not any(p.is_running() for p in during)


async def test_a_worker_without_chromium_stays_up_and_says_why(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    spec = {**render_job(site.url("/js")), "max_attempts": 1}
    async with browser_worker(run_worker, chromium_path="/nonexistent/chromium"):
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=20)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "browser_unavailable"
    assert "OUTRIDER_CHROMIUM_PATH" in job["error"]["message"]
    assert site.hits["/js"] == 0


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Make this test process the subreaper (what an init or systemd is to a real worker)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def start_browser_worker(
    tmp_path: Path, database_url: str, redis_url: str
) -> subprocess.Popen[bytes]:
    env = process_env(tmp_path / "data", database_url, redis_url)
    args = [*outrider_command(), "worker", "--queue", "browser", "--concurrency", "2"]
    return spawn(args, env, tmp_path / "worker.log", tmp_path)


async def browser_tree(
    worker: subprocess.Popen[bytes], log: Path, timeout_s: float = 30
) -> list[int]:
    """Wait for the worker to be up with its browser; then the pids of the browser's processes."""
    deadline = time.monotonic() + timeout_s
    while not (browser_pids(worker.pid) and '"worker.started"' in log.read_text()):
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        assert time.monotonic() < deadline, "the worker launched no browser"
        await asyncio.sleep(0.1)
    browser = []  # Playwright's node driver and Chromium's processes (not e.g. the parse pool)
    for process in psutil.Process(worker.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.name().startswith(("chrom", "node")):
                browser.append(process.pid)
    return browser


def present(pids: list[int]) -> list[str]:
    """Those of `pids` still in the process table (running, or a zombie nobody reaped)."""
    left = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            left.append(f"{pid} {process.name()} {process.status()}")
    return left


async def test_sigterm_stops_the_worker_and_every_chromium_process(
    tmp_path: Path, database_url: str, own_redis: str
) -> None:
    worker = start_browser_worker(tmp_path, database_url, own_redis)
    tree = await browser_tree(worker, tmp_path / "worker.log")
    worker.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.wait, 20)

    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert len(tree) >= 4  # node driver, browser, zygote, ...
    assert present(tree) == []  # gone and reaped by the worker itself: not even zombies


async def test_sigkill_of_the_worker_takes_chromium_down_with_it(
    tmp_path: Path, database_url: str, own_redis: str
) -> None:
    with subreaper():
        worker = start_browser_worker(tmp_path, database_url, own_redis)
        tree = await browser_tree(worker, tmp_path / "worker.log")
        killed_at = time.monotonic()
        worker.kill()
        assert await asyncio.to_thread(worker.wait, 10) == -signal.SIGKILL
        while any(" zombie" not in p for p in present(tree)) and time.monotonic() < killed_at + 5:
            await asyncio.sleep(0.05)
        running = [p for p in present(tree) if " zombie" not in p]
        print(f"{len(tree)} browser processes gone {time.monotonic() - killed_at:.2f} s after")
        reaped_by = time.monotonic() + 5
        while present(tree) and time.monotonic() < reaped_by:
            for pid in tree:  # the supervisor's part: reap what was handed to it
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            reap_chromium()
            await asyncio.sleep(0.05)

    assert running == []  # the driver saw its stdin close and took the browser with it
    assert present(tree) == []


# A parent that starts a child (`spawn`: a process with a second thread, whose id looks like a
# child's pid) or reaps one (`reap`) when told.
CHILD = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); print(1)"
PARENT = f"""
import os, subprocess, sys
for line in sys.stdin:
    if line.strip() == "spawn":
        child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE)
        child.stdout.readline()
    else:
        os.wait()
    print("done", flush=True)
"""


def test_a_process_tree_is_followed_through_the_pids_handed_out_since_the_last_look() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    commands, answers = parent.stdin, parent.stdout
    assert commands is not None
    assert answers is not None

    def tell(command: str) -> None:
        commands.write(command + "\n")
        commands.flush()
        assert answers.readline() == "done\n"

    try:
        tree = Tree(parent.pid)
        alone = tree.usage()
        tell("spawn")
        (child,) = psutil.Process(parent.pid).children()
        with_child = tree.usage()
        members_with_child = set(tree.members)
        child.kill()
        tell("reap")
        after = tree.usage()
    finally:
        parent.kill()
        parent.wait()

    assert alone.total > 0  # its own pages and the binary's
    assert alone.renderers == {}
    assert members_with_child == {parent.pid, child.pid}  # not the child's thread
    assert with_child.total > alone.total
    assert tree.walks == 1  # the child was found among the new pids, not by a second walk
    assert set(tree.members) == {parent.pid}  # gone once reaped
    assert after.total < with_child.total

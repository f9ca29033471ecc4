"""`outrider dev`: everything on one machine from one command, and Ctrl-C stops all of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from outrider.dev import free_port
from tests.e2e.cluster import bearer, check_key_output
from tests.e2e.processes import (
    TAG_VAR,
    alive,
    describe,
    die_with_parent,
    new_tag,
    outrider_command,
    reap_tagged,
    run_command,
    tagged,
)
from tests.helpers import TargetServer, http_job, wait_for_job

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


async def _read_banner(stdout: asyncio.StreamReader, log: Path) -> dict[str, str]:
    """The lines `outrider dev` prints once everything is up, as {label: value}."""
    banner: dict[str, str] = {}
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            line = (await stdout.readline()).decode()
            assert line, f"outrider dev exited before it was ready:\n{log.read_text()[-3000:]}"
            if match := re.match(r"^\s+([A-Za-z ]+):\s+(\S+)\s*$", line):
                banner[match[1]] = match[2]
            if match := re.search(r"; workers: (.+)$", line):
                banner["worker metrics"] = match[1]
            if "Ctrl-C" in line:
                return banner


async def _wait_gone(tree: list[psutil.Process], tag: str, timeout_s: float) -> list[str]:
    """Wait for every process of the tree, and every other process carrying the tag (one the
    snapshot missed, or an orphan adopted by init), to end; returns those that did not."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {*alive(tree), *tagged(tag)}
        if not left or time.monotonic() > deadline:
            return [describe(process) for process in left]
        await asyncio.sleep(0.1)


async def test_outrider_dev_runs_and_stops_cleanly(tmp_path: Path, target: TargetServer) -> None:
    cwd, data_dir = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")}
    tag = new_tag()
    env.update(
        {TAG_VAR: tag},
        PYTHONUNBUFFERED="1",
        OUTRIDER_DATA_DIR=str(data_dir),
        OUTRIDER_API_PORT=str(port),
        OUTRIDER_EGRESS_ALLOW_CIDRS="127.0.0.0/8,::1/128",
        OUTRIDER_EGRESS_ALLOWED_PORTS="1-65535",
    )
    log = tmp_path / "dev.log"
    with log.open("wb") as stderr:
        dev = await asyncio.create_subprocess_exec(
            *outrider_command(),
            "dev",
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    tree: list[psutil.Process] = [psutil.Process(dev.pid)]
    try:
        assert dev.stdout is not None
        banner = await _read_banner(dev.stdout, log)
        api_url = f"http://127.0.0.1:{port}"
        assert banner["API"] == api_url
        assert banner["Docs"] == f"{api_url}/docs"
        key = banner["API key"]
        assert check_key_output(key + "\n") == key
        assert (data_dir / "dev.key").read_text().strip() == key
        children = psutil.Process(dev.pid).children()
        names = [p.name() for p in children]
        assert any("redis-server" in name for name in names), names
        assert len(children) >= 3, f"redis, the API and a worker per queue: {names}"

        code, out, err = await run_command(
            [*outrider_command(), "keys", "create", "--owner", "other"], env, cwd
        )
        assert code == 0, err
        other_key = check_key_output(out)

        async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
            assert (await client.get("/docs")).status_code == 200
            # The banner names the ports the workers really serve /metrics on.
            ports = re.findall(r"(default|browser) :(\d+)", banner["worker metrics"])
            assert [queue for queue, _ in ports] == ["default", "browser"], banner
            for _, metrics_port in ports:
                scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
                assert "outrider_" in scraped.text
            response = await client.post(
                "/v1/jobs",
                json=http_job(target.url(f"/json?dev={uuid.uuid4()}")),
                headers=bearer(key),
            )
            assert response.status_code == 202, response.text
            job = await wait_for_job(client, bearer(key), response.json()["id"], timeout_s=30)
            assert job["status"] == "succeeded", job
            assert job["result"]["status"] == 200
            listing = await client.get("/v1/jobs", headers=bearer(other_key))
            assert listing.status_code == 200, listing.text
            assert listing.json()["items"] == [], "another owner sees none of dev's jobs"

        tree += psutil.Process(dev.pid).children(recursive=True)
        snapshot = [describe(process) for process in tree]
        started = time.monotonic()
        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        left = await _wait_gone(tree, tag, STOP_TIMEOUT_S)
        stopped_s = time.monotonic() - started
        code = await asyncio.wait_for(dev.wait(), 5)
    finally:
        for process in alive(tree):
            with contextlib.suppress(psutil.Error):
                process.kill()
        killed = reap_tagged(tag, timeout_s=0)
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(dev.wait(), 5)

    assert not left, f"still running {STOP_TIMEOUT_S} s after SIGINT: {left}"
    assert not killed, killed
    assert code == 0, log.read_text()[-3000:]
    said = log.read_text()
    for noise in ("Traceback", "KeyboardInterrupt", "revocation_watch_failed", "error"):
        assert noise not in said, f"Ctrl-C is not quiet: {said[-3000:]}"
    assert list(cwd.iterdir()) == [], "everything went to OUTRIDER_DATA_DIR, nothing to the cwd"
    print(f"outrider dev stopped in {stopped_s:.1f} s; its tree was:", *snapshot, sep="\n  ")

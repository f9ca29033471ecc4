"""Real Outrider processes for e2e and fault tests: `outrider api` and workers as a Cluster.

`Cluster.stop()` sends SIGTERM, then SIGKILL after a grace period, and reports any process of
the cluster still running (tests/e2e/processes.py), even one orphaned long before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from outrider.dev import free_port
from tests.e2e.processes import TAG_VAR, new_tag, process_tree, reap_tagged, run_command, terminate

# Re-exported: tests/worker/test_browser_processes.py starts a worker process with them.
from tests.e2e.processes import outrider_command as outrider_command
from tests.e2e.processes import spawn as spawn

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def process_env(
    data_dir: Path, database_url: str, redis_url: str | None, **extra: str
) -> dict[str, str]:
    """The environment of every child: no inherited OUTRIDER_* variable, short intervals."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")}
    env.update(
        {
            TAG_VAR: new_tag(),
            "PYTHONUNBUFFERED": "1",
            "OUTRIDER_DATABASE_URL": database_url,
            "OUTRIDER_DATA_DIR": str(data_dir),
            "OUTRIDER_SECRET_KEY": "test",
            "OUTRIDER_EGRESS_ALLOW_CIDRS": "127.0.0.0/8,::1/128",
            "OUTRIDER_EGRESS_ALLOWED_PORTS": "1-65535",
            "OUTRIDER_WORKER_HEARTBEAT_S": "0.5",
            "OUTRIDER_WORKER_LEASE_S": "3",
            "OUTRIDER_RECONCILE_INTERVAL_S": "0.5",
            "OUTRIDER_ENQUEUE_GRACE_S": "1",
            "OUTRIDER_LOG_FORMAT": "json",
            # Keeps teardown quick: an idle worker stops at once, a busy one within 1 s.
            "OUTRIDER_WORKER_SHUTDOWN_GRACE_S": "1",
            "OUTRIDER_BACKOFF_BASE_S": "0.2",
            "OUTRIDER_BACKOFF_MAX_S": "1",
            # Every job here calls one loopback host: per-host politeness (2/s by default)
            # would make these tests about pacing, which tests/worker covers.
            "OUTRIDER_HOST_RATE_PER_S": "0",
            "OUTRIDER_HOST_CONCURRENCY": "0",
            # Many workers on one host: each serves /metrics on a port the OS picks.
            "OUTRIDER_WORKER_METRICS_PORT": "0",
        }
    )
    if redis_url is not None:
        env["OUTRIDER_REDIS_URL"] = redis_url
    env.update(extra)
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for a failing test's report."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """An API process and worker processes sharing one environment."""

    env: dict[str, str]
    workdir: Path
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `outrider <args>` under a unique name."""
        assert name not in self.procs, name
        proc = spawn([*outrider_command(), *args], self.env, self.log_path(name), self.workdir)
        self.procs[name] = proc
        return proc

    def start_api(self) -> subprocess.Popen[bytes]:
        return self.start("api", "api", "--host", "127.0.0.1", "--port", str(self.api_port))

    def start_worker(self, concurrency: int, queue: str = "default") -> subprocess.Popen[bytes]:
        name = f"worker-{sum(n.startswith('worker-') for n in self.procs)}"
        return self.start(name, "worker", "--queue", queue, "--concurrency", str(concurrency))

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for n, p in self.procs.items() if n.startswith("worker-")]

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for /readyz; fail early if a child exits."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.api_url, timeout=2) as client:
            while time.monotonic() < deadline:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise AssertionError(
                            f"{name} exited with {proc.returncode}:\n{self.logs(name)}"
                        )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"the API was not ready in {timeout_s} s:\n{self.logs('api')}")

    async def wait_workers(self, timeout_s: float = 30.0) -> dict[int, str]:
        """Wait until every running worker process has published its liveness key;
        returns worker id by pid."""
        wanted = {p.pid for p in self.workers if p.poll() is None}
        deadline = time.monotonic() + timeout_s
        found: dict[int, str] = {}
        redis = Redis.from_url(self.env["OUTRIDER_REDIS_URL"])
        try:
            while time.monotonic() < deadline:
                found = {}
                async for key in redis.scan_iter(match="outrider:worker:*"):
                    worker_id = key.decode().removeprefix("outrider:worker:")
                    found[int(worker_id.split(":")[-2])] = worker_id
                if wanted <= found.keys():
                    return {pid: found[pid] for pid in wanted}
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
        raise AssertionError(f"workers {wanted} not all live after {timeout_s} s: {found}")

    async def cli(self, *args: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
        """Run `outrider <args>` to completion: (exit code, stdout, stderr)."""
        return await run_command([*outrider_command(), *args], self.env, self.workdir, timeout_s)

    async def create_key(self, owner: str) -> str:
        """`outrider keys create`: its stdout must be exactly the key, on one line."""
        code, out, err = await self.cli("keys", "create", "--owner", owner)
        assert code == 0, err
        return check_key_output(out)

    def logs(self, name: str, lines: int = 40) -> str:
        return log_tail(self.log_path(name), lines)

    def log_events(self, name: str) -> Counter[str]:
        """How often each structlog event appears in a process's JSON log."""
        events: Counter[str] = Counter()
        path = self.log_path(name)
        for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
            with contextlib.suppress(ValueError):
                record: Any = json.loads(line)
                if isinstance(record, dict):
                    events[str(record.get("event"))] += 1
        return events

    def stop(self) -> list[str]:
        """Stop every process; returns the survivors (there must be none)."""
        procs = list(self.procs.values())
        survivors = terminate(procs, process_tree(procs))
        survivors += reap_tagged(self.env[TAG_VAR])
        for name in self.procs:
            print(f"----- {name} (exit {self.procs[name].returncode}) -----\n{self.logs(name)}")
        return survivors


def check_key_output(out: str) -> str:
    """`outrider keys create` prints the key and nothing else: one line, `ork_...`."""
    lines = out.split("\n")
    assert len(lines) == 2, repr(out)
    assert lines[1] == "", repr(out)
    assert re.fullmatch(r"ork_[A-Za-z0-9_-]{43}", lines[0]), repr(out)
    return lines[0]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def list_all_jobs(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Every job of the key's owner, by id (following the cursor)."""
    jobs: dict[str, Any] = {}
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/jobs", params=params, headers=headers)
        response.raise_for_status()
        body = response.json()
        jobs.update({job["id"]: job for job in body["items"]})
        cursor = body["next_cursor"]
        if not cursor:
            return jobs


async def wait_all_terminal(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    ids: list[str],
    timeout_s: float,
) -> dict[str, Any]:
    """Poll the listing until every job in `ids` is terminal; 503s (an outage) are waited out."""
    deadline = time.monotonic() + timeout_s
    statuses: Counter[str] = Counter()
    while time.monotonic() < deadline:
        try:
            jobs = await list_all_jobs(client, headers)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 503:
                raise
            await asyncio.sleep(0.5)
            continue
        statuses = Counter(jobs[i]["status"] if i in jobs else "missing" for i in ids)
        if all(status in TERMINAL for status in statuses):
            return {i: jobs[i] for i in ids}
        await asyncio.sleep(0.25)
    raise AssertionError(f"jobs not terminal after {timeout_s} s: {dict(statuses)}")

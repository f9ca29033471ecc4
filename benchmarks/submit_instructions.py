"""CPU instructions per `POST /v1/jobs` inside the API process, Outrider against the bare app.

Wall-clock numbers on a shared VM drift by up to 25 % within minutes, too much to judge a 5 %
change. This counts instructions instead (valgrind's callgrind; repeatable to about 0.01 %):
each side's ASGI app is called in-process with one job, for N requests after a warm-up, and
the count of a 100-request run is subtracted from a 600-request run's (startup cancels out).
What is stubbed, on both sides alike, is what is outside the HTTP layer: Outrider's group
commit (the INSERT and the enqueue) and the bare app's arq `enqueue_job`. The key check runs
for real, from the API's key cache (as under load).

    .venv/bin/python -m benchmarks.submit_instructions        # needs valgrind (apt)

It takes a few minutes: the app runs about 50 times slower under callgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any

ENV = {
    "OUTRIDER_SECRET_KEY": "bench",
    "OUTRIDER_LOG_LEVEL": "WARNING",
    "OUTRIDER_EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
    "OUTRIDER_EGRESS_ALLOWED_PORTS": "1-65535",
    "PYTHONHASHSEED": "0",
}
KEY = "k" * 40
BODY = json.dumps({"kind": "http", "input": {"url": "http://127.0.0.1:9/ok"}}).encode()
WARM_UP, SHORT, LONG = 200, 100, 600


class Roomy:
    """The queue seam's room check: Redis has room."""

    full = False


def _apps() -> dict[str, tuple[Any, list[tuple[bytes, bytes]]]]:
    """Each side's ASGI app, with its collaborators outside the HTTP layer stubbed."""
    from api.app import create_app
    from api.deps import AppState, Principal, PrincipalCache
    from benchmarks import bare_submit_app
    from shared.auth import hash_key
    from shared.egress import EgressPolicy
    from shared.models import Agent, utcnow
    from shared.repositories.job import NewJob
    from shared.settings import get_settings

    class Committed:  # stands in for api/services/submitter.py
        async def submit(self, row: dict[str, Any]) -> NewJob:
            now = utcnow()
            return NewJob(id=uuid.uuid4(), created_at=now, run_after=now, **row)

    class Served:  # every queue has a live worker
        async def unserved(self, queues: set[str]) -> list[str]:
            return []

    class Enqueued:  # stands in for arq's pool
        async def enqueue_job(self, *args: Any, **kwargs: Any) -> None:
            return None

    settings = get_settings()
    app = create_app(settings)
    agent = Agent(id=uuid.uuid4(), owner_id=uuid.uuid4(), name="default")
    state = AppState(
        settings=settings,
        engine=None,  # type: ignore[arg-type]
        sessionmaker=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        job_queue=Roomy(),  # type: ignore[arg-type]
        submitter=Committed(),  # type: ignore[arg-type]
        policy=EgressPolicy.from_settings(settings),
        live_queues=Served(),  # type: ignore[arg-type]
        box=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        streams=None,  # type: ignore[arg-type]
        principals=PrincipalCache(3600),
    )
    principal = Principal(owner_id=agent.owner_id, owner_name="bench", default_agent=agent)
    state.principals.put(hash_key(KEY), principal, state.principals.generation)
    app.state.outrider = state
    bare_submit_app.pool = Enqueued()  # type: ignore[assignment]
    return {
        "outrider": (app, [(b"authorization", f"Bearer {KEY}".encode())]),
        "bare": (bare_submit_app.app, []),
    }


async def _requests(side: str, count: int) -> None:
    app, extra = _apps()[side]
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        *extra,
    ]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(WARM_UP + count):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/jobs",
            "raw_path": b"/v1/jobs",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
    if set(statuses) != {202}:
        raise SystemExit(f"{side}: answers {sorted(set(statuses))}, expected only 202")


def _instructions(side: str, count: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.submit_instructions",
            "--inner",
            side,
            str(count),
        ],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{out[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inner", nargs=2, metavar=("SIDE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        import uvloop

        os.environ.update(ENV)
        uvloop.run(_requests(args.inner[0], int(args.inner[1])))
        return
    per_request = {}
    for side in ("outrider", "bare"):
        short, long = _instructions(side, SHORT), _instructions(side, LONG)
        per_request[side] = (long - short) / (LONG - SHORT)
        print(f"{side:9} {per_request[side]:>12,.0f} instructions per request", flush=True)
    print(f"ratio     {per_request['outrider'] / per_request['bare']:12.2f}")


if __name__ == "__main__":
    main()

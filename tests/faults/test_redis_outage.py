"""Redis dies (losing every queued id) in the middle of a burst of submissions and comes back
empty 5 s later: no request fails with a 5xx other than 503, and every accepted job still
runs to success, because the rows are the truth and the reconciler re-enqueues them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx
import pytest
from redis.asyncio import Redis

from shared.queue import queue_key
from tests.e2e.cluster import bearer, wait_all_terminal
from tests.e2e.conftest import StartCluster
from tests.faults.redis_server import RedisServer
from tests.helpers import TargetServer, http_job

pytestmark = pytest.mark.e2e

TOTAL = 500
PARALLEL = 20
PACE_S = 0.3  # between one submitter's requests: the burst outlasts the outage
KILL_AFTER = 100  # accepted jobs
OUTAGE_S = 5.0
MAX_TRIES = 20
FINISH_TIMEOUT_S = 90.0


class Burst:
    """Submits TOTAL jobs, PARALLEL at a time; retries 503s, fails on anything else."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
        self.client, self.headers, self.url = client, headers, url
        self.accepted: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.gave_up = 0
        self.redis_down = False
        self.accepted_while_down = 0

    async def submit(self) -> None:
        for _ in range(MAX_TRIES):
            response = await self.client.post(
                "/v1/jobs", json=http_job(self.url), headers=self.headers
            )
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.append(response.json()["id"])
                self.accepted_while_down += self.redis_down
                return
            assert response.status_code == 503, (response.status_code, response.text)
            assert response.json()["error"]["code"] == "service_unavailable"
            await asyncio.sleep(min(float(response.headers["Retry-After"]), 1.0))
        self.gave_up += 1  # never accepted: not a job the system owes anyone

    async def run(self) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(TOTAL):
            queue.put_nowait(n)

        async def submitter() -> None:
            while not queue.empty():
                queue.get_nowait()
                await self.submit()
                await asyncio.sleep(PACE_S)

        await asyncio.gather(*(submitter() for _ in range(PARALLEL)))


async def test_redis_restart_mid_burst_loses_no_accepted_job(
    private_redis: RedisServer, start_cluster: StartCluster, target: TargetServer
) -> None:
    redis = private_redis
    cluster = await start_cluster(workers=2, concurrency=4, redis_url=redis.url)
    headers = bearer(await cluster.create_key(f"redis-{uuid.uuid4().hex[:8]}"))
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as client:
        burst = Burst(client, headers, target.url("/slow?s=0.2"))
        submitting = asyncio.create_task(burst.run())

        while len(burst.accepted) < KILL_AFTER:
            assert not submitting.done(), submitting
            await asyncio.sleep(0.02)
        probe = Redis.from_url(redis.url)
        lost = await probe.zcard(queue_key("default"))
        await probe.aclose()
        redis.kill()
        burst.redis_down = True
        await asyncio.sleep(OUTAGE_S)
        await redis.start()
        burst.redis_down = False
        restarted_at = time.monotonic()

        await submitting
        jobs = await wait_all_terminal(client, headers, burst.accepted, timeout_s=FINISH_TIMEOUT_S)
        drained_s = time.monotonic() - restarted_at
        ready = await client.get("/readyz")

    print(
        f"statuses={dict(burst.statuses)} accepted={len(burst.accepted)} "
        f"while_down={burst.accepted_while_down} gave_up={burst.gave_up} lost_ids={lost} "
        f"all done {drained_s:.1f} s after the restart"
    )
    assert set(burst.statuses) <= {202, 503}
    assert len(burst.accepted) + burst.gave_up == TOTAL
    assert len(set(burst.accepted)) == len(burst.accepted)
    assert lost > 0, "Redis held queued ids when it died (else the test proves nothing)"
    assert burst.accepted_while_down > 0, "submissions went on during the outage"
    assert Counter(job["status"] for job in jobs.values()) == {"succeeded": len(jobs)}
    assert ready.status_code == 200
    assert all(p.poll() is None for p in cluster.procs.values()), "no process died"
    assert cluster.log_events("api")["api.unhandled_error"] == 0

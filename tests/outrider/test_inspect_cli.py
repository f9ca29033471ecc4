"""`outrider queue`, `outrider workers`, `outrider jobs` and `outrider jobs retry`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from typer.testing import CliRunner

from outrider.cli import app
from shared.db import create_engine, create_sessionmaker
from shared.events import stream_key
from shared.liveness import publish_liveness
from shared.models import Job, JobStatus, utcnow
from shared.queue import queue_key
from shared.repositories.agent import get_default_agent
from shared.repositories.job import NewJob, insert_jobs
from shared.repositories.owner import get_or_create_owner
from shared.services.status import queue_snapshots
from shared.settings import Settings


async def _jobs(
    settings: Settings, owner_name: str, states: list[tuple[str, float]]
) -> list[NewJob]:
    """Jobs of a new owner in the given (status, finished this many hours ago) states."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            owner = await get_or_create_owner(session, owner_name)
            agent = await get_default_agent(session, owner.id)
            now = utcnow()
            rows: list[dict[str, Any]] = []
            for status, hours_ago in states:
                ended = status in ("succeeded", "failed", "cancelled")
                rows.append(
                    {
                        "owner_id": owner.id,
                        "agent_id": agent.id,
                        "kind": "http",
                        "queue": "default",
                        "input": {"url": "http://127.0.0.1:9/"},
                        "max_attempts": 3,
                        "timeout_s": 5.0,
                        "status": status,
                        "attempts": 3 if status == "failed" else 0,
                        "finished_at": now - timedelta(hours=hours_ago) if ended else None,
                        "error": {"code": "http_500", "message": "boom"}
                        if status == "failed"
                        else None,
                    }
                )
            return await insert_jobs(session, rows)
    finally:
        await engine.dispose()


async def _rows(settings: Settings, ids: list[uuid.UUID]) -> dict[uuid.UUID, Job]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await session.scalars(select(Job).where(Job.id.in_(ids)))
            return {job.id: job for job in found}
    finally:
        await engine.dispose()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr("outrider.cli.get_settings", lambda: settings)
    return CliRunner()


def test_jobs_lists_an_owners_failed_jobs_with_their_errors(
    settings: Settings, cli: CliRunner
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    jobs = asyncio.run(_jobs(settings, name, [("failed", 0.1), ("succeeded", 0.1), ("queued", 0)]))
    result = cli.invoke(app, ["jobs", "--owner", name, "--status", "failed"])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split()[:4] == ["ID", "OWNER", "KIND", "STATUS"]
    assert len(lines) == 1
    assert str(jobs[0].id) in lines[0]
    assert "http_500: boom" in lines[0]
    assert "3/3" in lines[0]

    everything = cli.invoke(app, ["jobs", "--owner", name])
    assert len(everything.output.splitlines()) == 1 + 3
    assert "No jobs match" in cli.invoke(app, ["jobs", "--owner", "nobody"]).output
    assert cli.invoke(app, ["jobs", "--status", "lost"]).exit_code == 2


def test_jobs_retry_requeues_recent_failures_in_bulk(
    settings: Settings, cli: CliRunner, redis_url: str
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    recent, recent2, old, done = asyncio.run(
        _jobs(settings, name, [("failed", 0.2), ("failed", 0.5), ("failed", 3), ("succeeded", 0)])
    )
    result = cli.invoke(
        app, ["jobs", "retry", "--status", "failed", "--since", "1h", "--owner", name]
    )
    assert result.exit_code == 0, result.output
    assert "Requeued 2 failed jobs." in result.output

    rows = asyncio.run(_rows(settings, [recent.id, recent2.id, old.id, done.id]))
    for job in (recent, recent2):
        row = rows[job.id]
        assert (row.status, row.attempts, row.error, row.finished_at) == ("queued", 0, None, None)
    assert rows[old.id].status == "failed"
    assert rows[done.id].status == "succeeded"

    async def in_redis() -> tuple[list[Any], list[dict[str, Any]]]:
        redis = Redis.from_url(redis_url)
        try:
            scores = [await redis.zscore(queue_key("default"), str(j.id)) for j in (recent, old)]
            entries = await redis.xrange(stream_key(recent.owner_id))
            return scores, [json.loads(fields[b"e"]) for _, fields in entries]
        finally:
            await redis.aclose()

    (recent_score, old_score), events = asyncio.run(in_redis())
    assert recent_score is not None
    assert old_score is None
    retried = {e["job_id"] for e in events if e["type"] == "queued" and e["reason"] == "retry"}
    assert retried == {str(recent.id), str(recent2.id)}

    again = cli.invoke(app, ["jobs", "retry", "--since", "1h", "--owner", name])
    assert "Requeued 0 failed jobs." in again.output
    bad = cli.invoke(app, ["jobs", "retry", "--since", "yesterday"])
    assert bad.exit_code == 2
    assert "duration" in bad.output
    assert (
        cli.invoke(app, ["jobs", "retry", "--status", "succeeded", "--since", "1h"]).exit_code == 2
    )
    _cancel(settings, [recent.id, recent2.id])


def _cancel(settings: Settings, ids: list[uuid.UUID]) -> None:
    async def run() -> None:
        from sqlalchemy import update

        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine).begin() as session:
                await session.execute(
                    update(Job).where(Job.id.in_(ids)).values(status=JobStatus.CANCELLED)
                )
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_queue_and_workers_print_what_the_database_and_redis_hold(
    settings: Settings, cli: CliRunner, redis_url: str
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    queued = asyncio.run(_jobs(settings, name, [("queued", 0)] * 3))

    async def expected() -> int:
        engine = create_engine(settings)
        redis = Redis.from_url(redis_url)
        try:
            async with create_sessionmaker(engine)() as session:
                (default, *_) = await queue_snapshots(session, redis, utcnow())
                count = await session.scalar(
                    select(func.count()).where(Job.status == "queued", Job.queue == "default")
                )
            assert default.ready + default.deferred == count
            await publish_liveness(
                redis,
                {
                    "worker_id": "cli-host:77:aaaaaa",
                    "queue": "browser",
                    "concurrency": 4,
                    "running": 1,
                    "done": 12,
                    "failed": 2,
                    "started_at": utcnow().isoformat(),
                    "heartbeat_at": utcnow().isoformat(),
                    "version": "9.9.9",
                },
                ttl_s=30,
            )
            return default.ready
        finally:
            await redis.aclose()
            await engine.dispose()

    ready = asyncio.run(expected())
    result = cli.invoke(app, ["queue"])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split()[:4] == ["QUEUE", "READY", "DEFERRED", "RUNNING"]
    default = next(line.split() for line in lines if line.startswith("default"))
    assert int(default[1]) == ready >= 3

    workers = cli.invoke(app, ["workers"])
    assert workers.exit_code == 0, workers.output
    line = next(line for line in workers.output.splitlines() if "cli-host:77:aaaaaa" in line)
    assert line.split()[1:6] == ["browser", "4", "1", "12", "2"]
    assert "9.9.9" in line
    _cancel(settings, [job.id for job in queued])

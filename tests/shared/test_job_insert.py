"""The group commit's single-statement INSERT (shared/repositories/job_pg.py) writes exactly
what the portable `insert_jobs` writes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_pg_pool
from shared.models import Job, utcnow
from shared.repositories.job import NewJob, insert_jobs
from shared.repositories.job_pg import insert_jobs_pg
from shared.settings import Settings
from tests.worker.support import make_owner

pytestmark = pytest.mark.postgres


def rows(owner_id: uuid.UUID, agent_id: uuid.UUID) -> list[dict[str, Any]]:
    base = {"owner_id": owner_id, "agent_id": agent_id, "max_attempts": 3, "webhook_url": None}
    return [
        {**base, "kind": "http", "queue": "default", "timeout_s": 10.0,
         "input": {"url": "http://127.0.0.1:9/a", "json": {"n": [1, None, "é"]}}},
        {**base, "kind": "render", "queue": "browser", "timeout_s": 2.5,
         "input": {"url": "http://127.0.0.1:9/b"}, "webhook_url": "https://hooks.example/x"},
    ]  # fmt: skip


async def read(sessionmaker: async_sessionmaker[AsyncSession], jobs: list[NewJob]) -> list[Job]:
    async with sessionmaker() as session:
        found = {
            job.id: job
            for job in await session.scalars(select(Job).where(Job.id.in_([j.id for j in jobs])))
        }
    return [found[job.id] for job in jobs]


def columns(job: Job) -> dict[str, Any]:
    return {c.key: getattr(job, c.key) for c in Job.__table__.c if c.key != "id"}


async def test_insert_jobs_pg_writes_what_insert_jobs_writes(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await make_owner(sessionmaker)
    now = utcnow()
    async with sessionmaker.begin() as session:
        portable = await insert_jobs(session, rows(owner.id, owner.agent_id), now=now)
    async with create_pg_pool(settings, max_size=1) as pool:
        direct = await insert_jobs_pg(pool, rows(owner.id, owner.agent_id), now=now)
        with pytest.raises(ValueError, match="same columns"):
            await insert_jobs_pg(pool, [rows(owner.id, owner.agent_id)[0], {"kind": "http"}])
    assert [job.id for job in direct] != [job.id for job in portable]
    assert len(direct) == len(portable) == 2
    written_portable, written_direct = (
        await read(sessionmaker, portable),
        await read(sessionmaker, direct),
    )
    assert [columns(j) for j in written_direct] == [columns(j) for j in written_portable]
    # What the API answers with (the returned NewJobs) is what was written.
    for new, row in zip(direct, written_direct, strict=True):
        assert {k: getattr(new, k, None) for k in columns(row)} == columns(row)


async def test_values_shared_by_every_row_are_sent_once_but_only_when_identical(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Equal is not enough to send a value once: 1, 1.0 and True are equal in Python and
    three different JSON values."""
    owner = await make_owner(sessionmaker)
    base = rows(owner.id, owner.agent_id)[0]
    numbers: list[Any] = [1, 1.0, True]
    batch = [{**base, "input": {"url": "http://127.0.0.1:9/a", "json": n}} for n in numbers]
    async with create_pg_pool(settings, max_size=1) as pool:
        many = await insert_jobs_pg(pool, batch)
        (one,) = await insert_jobs_pg(pool, batch[:1])  # every column a single value
    written = await read(sessionmaker, [*many, one])
    assert [type(job.input["json"]) for job in written] == [int, float, bool, int]
    assert {job.owner_id for job in written} == {owner.id}
    assert len({job.id for job in written}) == 4
    assert written[0].created_at == written[2].created_at

"""The frontier's parity suite: the same behaviour on SQLite and PostgreSQL (each store's own
ignoring INSERT), including the exactly-once settle when two workers race for one page."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from migrations import apply as migrate
from shared.db import create_engine, create_sessionmaker
from shared.models import CrawlPage, Job, PageState, SkipReason
from shared.repositories import frontier
from shared.repositories.frontier import NewPage
from shared.repositories.frontier_store import FrontierStore, open_frontier_store
from shared.repositories.job import insert_jobs
from shared.settings import Settings
from tests.worker.support import Owner, make_owner

IMPLEMENTATIONS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=IMPLEMENTATIONS)
def store_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'frontier.db'}"
        migrate.upgrade(url)
        settings = settings.model_copy(update={"database_url": url, "data_dir": tmp_path})
    return settings


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[FrontierStore]:
    engine = create_engine(store_settings)
    yield open_frontier_store(engine, create_sessionmaker(engine))
    await engine.dispose()


async def new_crawl(store: FrontierStore, owner: Owner) -> uuid.UUID:
    row = {
        "owner_id": owner.id,
        "agent_id": owner.agent_id,
        "kind": "crawl",
        "queue": "default",
        "input": {"url": "http://127.0.0.1/"},
        "max_attempts": 1,
        "timeout_s": 10.0,
    }
    async with store.begin() as session:
        (job,) = await insert_jobs(session, [row])
        await frontier.add_crawl(session, store.ignoring, job.id)
        await frontier.add_crawl(session, store.ignoring, job.id)  # seeding again: no-op
    return job.id


async def test_a_url_is_one_row_per_crawl(store: FrontierStore) -> None:
    owner = await make_owner(store.sessionmaker)
    crawl_id, other = await new_crawl(store, owner), await new_crawl(store, owner)
    pages = [NewPage("http://x/a", 1), NewPage("http://x/b", 1), NewPage("http://x/a", 2)]
    async with store.begin() as session:
        await frontier.add_pages(session, store.ignoring, crawl_id, pages)
        await frontier.add_pages(session, store.ignoring, crawl_id, [NewPage("http://x/b", 0)])
        await frontier.add_pages(session, store.ignoring, other, [NewPage("http://x/a", 0)])
    async with store.read() as session:
        mine = await frontier.next_pending(session, crawl_id, 10)
        counts = await frontier.count_pages(session, crawl_id)
    # Found again closer, a pending URL takes the smaller depth (and is crawled sooner).
    assert [(p.url, p.depth) for p in mine] == [("http://x/b", 0), ("http://x/a", 1)]
    assert counts["pages"]["discovered"] == 2


async def _queue_one(store: FrontierStore, owner: Owner, crawl_id: uuid.UUID) -> uuid.UUID:
    async with store.begin() as session:
        await frontier.add_pages(session, store.ignoring, crawl_id, [NewPage("http://x/p", 0)])
        (page,) = await frontier.next_pending(session, crawl_id, 1)
        row = {
            "owner_id": owner.id,
            "agent_id": owner.agent_id,
            "kind": "fetch",
            "queue": "default",
            "input": {"url": page.url},
            "max_attempts": 1,
            "timeout_s": 10.0,
            "parent_id": crawl_id,
        }
        (job,) = await insert_jobs(session, [row])
        await frontier.mark_queued(session, [(page.id, job.id)])
        await frontier.add_taken(session, crawl_id, 1)
    return job.id


async def test_a_page_settles_exactly_once_under_a_race(store: FrontierStore) -> None:
    owner = await make_owner(store.sessionmaker)
    crawl_id = await new_crawl(store, owner)
    job_id = await _queue_one(store, owner, crawl_id)

    async def settle() -> bool:
        async with store.begin() as session:
            await frontier.lock_crawl(session, crawl_id)
            settled = await frontier.settle_page(session, job_id, PageState.SUCCEEDED, None)
            if settled is not None:  # the winner expands
                new = [NewPage(f"http://x/{n}", 1, "http://x/p") for n in range(5)]
                await frontier.add_pages(session, store.ignoring, crawl_id, new)
            return settled is not None

    results = await asyncio.gather(*(settle() for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    async with store.read() as session:
        counts = (await frontier.count_pages(session, crawl_id))["pages"]
        taken = await frontier.in_flight(session, crawl_id)
    assert counts["succeeded"] == 1
    assert counts["discovered"] == 6
    assert taken == 0


async def test_resume_makes_cancelled_pages_pending_again(store: FrontierStore) -> None:
    owner = await make_owner(store.sessionmaker)
    crawl_id = await new_crawl(store, owner)
    job_id = await _queue_one(store, owner, crawl_id)
    async with store.begin() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id))
        assert job is not None
        job.status = "cancelled"
        await frontier.add_pages(
            session,
            store.ignoring,
            crawl_id,
            [NewPage("http://x/late", 3, None, PageState.SKIPPED, SkipReason.LIMIT)],
        )
    async with store.begin() as session:
        await frontier.resume(session, crawl_id)
        taken = await frontier.lock_crawl(session, crawl_id)
    async with store.read() as session:
        pending = await frontier.next_pending(session, crawl_id, 10)
        rows = (
            await session.scalars(select(CrawlPage).where(CrawlPage.crawl_id == crawl_id))
        ).all()
    # Breadth first: the shallow page first; the deep one waits for its level.
    assert [p.url for p in pending] == ["http://x/p"]
    assert {(r.url, r.state, r.job_id) for r in rows} == {
        ("http://x/p", "pending", None),
        ("http://x/late", "pending", None),
    }
    assert taken == 0

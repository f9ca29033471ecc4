"""The scheduler: exactly one job per (schedule, instant) across concurrent passes and workers,
whatever a worker's clock says, through a crash mid-firing; misfire and overlap policies."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job, JobStatus, Schedule, ScheduleRun
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import TargetServer
from tests.worker.support import Owner, eventually, insert_http_job, make_owner
from worker.scheduler import Scheduler
from worker.state import WorkerState

Sessions = async_sessionmaker[AsyncSession]


async def _pause_all_schedules(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(update(Schedule).values(enabled=False))
        await session.execute(
            update(Job)
            .where(Job.status == JobStatus.QUEUED, Job.schedule_id.is_not(None))
            .values(status=JobStatus.CANCELLED)
        )


@pytest.fixture(autouse=True)
async def _only_this_tests_schedules(sessionmaker: Sessions) -> AsyncIterator[None]:
    """Scheduler passes count every due schedule in the database: other tests' (or an earlier
    module's) leftovers must not be due while these tests count."""
    await _pause_all_schedules(sessionmaker)
    yield
    await _pause_all_schedules(sessionmaker)


@pytest.fixture
async def owner(sessionmaker: Sessions) -> Owner:
    return await make_owner(sessionmaker)


@contextlib.asynccontextmanager
async def worker_state(settings: Settings, **overrides: Any) -> AsyncIterator[WorkerState]:
    state = await WorkerState.create(settings.model_copy(update=overrides), "default")
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
async def state(settings: Settings) -> AsyncIterator[WorkerState]:
    async with worker_state(settings) as value:
        yield value


def minute_floor(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


async def add_schedule(
    sessionmaker: Sessions,
    owner: Owner,
    next_fire_at: datetime,
    *,
    cron: str = "* * * * *",
    url: str = "http://127.0.0.1:9/never",
    **fields: Any,
) -> uuid.UUID:
    """A schedule row whose cursor is `next_fire_at` (as if it had been waiting for it)."""
    schedule = Schedule(
        id=uuid.uuid4(),
        owner_id=owner.id,
        cron=cron,
        timezone=fields.pop("timezone", "UTC"),
        job={"kind": "http", "input": {"url": url}},
        enabled=fields.pop("enabled", True),
        overlap=fields.pop("overlap", "allow"),
        misfire=fields.pop("misfire", "skip"),
        next_fire_at=next_fire_at,
        missed_count=0,
        **fields,
    )
    async with sessionmaker.begin() as session:
        session.add(schedule)
    return schedule.id


async def jobs_of(sessionmaker: Sessions, schedule_id: uuid.UUID) -> list[Job]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Job).where(Job.schedule_id == schedule_id).order_by(Job.schedule_instant)
        )
        return list(rows)


async def runs_of(sessionmaker: Sessions, schedule_id: uuid.UUID) -> list[ScheduleRun]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(ScheduleRun)
            .where(ScheduleRun.schedule_id == schedule_id)
            .order_by(ScheduleRun.instant)
        )
        return list(rows)


async def load(sessionmaker: Sessions, schedule_id: uuid.UUID) -> Schedule:
    async with sessionmaker() as session:
        schedule = await session.get(Schedule, schedule_id)
        assert schedule is not None
        return schedule


async def test_a_due_instant_fires_one_linked_job(
    sessionmaker: Sessions, owner: Owner, state: WorkerState
) -> None:
    instant = datetime.now(UTC) - timedelta(seconds=0.5)
    schedule_id = await add_schedule(sessionmaker, owner, instant)
    assert await Scheduler(state).run_once() == 1
    assert await Scheduler(state).run_once() == 0
    (job,) = await jobs_of(sessionmaker, schedule_id)
    assert (job.schedule_instant, job.status, job.kind) == (instant, "queued", "http")
    assert (job.owner_id, job.agent_id) == (owner.id, owner.agent_id)
    (run,) = await runs_of(sessionmaker, schedule_id)
    assert (run.instant, run.job_id, run.status, run.skipped_because) == (
        instant,
        job.id,
        "fired",
        None,
    )
    schedule = await load(sessionmaker, schedule_id)
    assert schedule.next_fire_at == minute_floor(instant) + timedelta(minutes=1)
    assert schedule.missed_count == 0


async def test_an_instant_not_yet_due_does_not_fire(
    sessionmaker: Sessions, owner: Owner, state: WorkerState
) -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    schedule_id = await add_schedule(sessionmaker, owner, later)
    paused_id = await add_schedule(
        sessionmaker, owner, datetime.now(UTC) - timedelta(seconds=1), enabled=False
    )
    assert await Scheduler(state).run_once() == 0
    assert await jobs_of(sessionmaker, schedule_id) == []
    assert await jobs_of(sessionmaker, paused_id) == []
    assert await Scheduler(state).sleep_s() <= state.settings.schedule_poll_interval_s


@pytest.mark.parametrize("passes", [2, 5, 20])
async def test_concurrent_passes_fire_each_instant_once(
    sessionmaker: Sessions, owner: Owner, settings: Settings, passes: int
) -> None:
    # Five instants due at once (within the misfire grace): every one fires, once.
    first = minute_floor(datetime.now(UTC)) - timedelta(minutes=4)
    schedule_id = await add_schedule(sessionmaker, owner, first)
    async with contextlib.AsyncExitStack() as stack:
        states = [
            await stack.enter_async_context(worker_state(settings, schedule_misfire_grace_s=3600))
            for _ in range(min(passes, 5))  # separate engines, and shared ones beyond five
        ]
        schedulers = [Scheduler(states[i % len(states)]) for i in range(passes)]
        created = await asyncio.gather(*(s.run_once() for s in schedulers))
    jobs = await jobs_of(sessionmaker, schedule_id)
    expected = [first + timedelta(minutes=m) for m in range(5)]
    assert sum(created) == len(jobs) == 5
    assert [job.schedule_instant for job in jobs] == expected
    assert [run.instant for run in await runs_of(sessionmaker, schedule_id)] == expected


@contextlib.contextmanager
def skewed_process_clock(monkeypatch: pytest.MonkeyPatch, offset_s: float) -> Iterator[None]:
    """Make this process's clock `offset_s` off, for every module that reads it via utcnow."""
    real = datetime.now

    def skewed() -> datetime:
        return real(UTC) + timedelta(seconds=offset_s)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in {"shared", "worker", "api"} and callable(
            getattr(module, "utcnow", None)
        ):
            monkeypatch.setattr(module, "utcnow", skewed)
    try:
        yield
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("offset_s", [60.0, -60.0])
async def test_a_skewed_worker_clock_changes_nothing(
    sessionmaker: Sessions,
    owner: Owner,
    state: WorkerState,
    monkeypatch: pytest.MonkeyPatch,
    offset_s: float,
) -> None:
    now = datetime.now(UTC)
    not_yet = await add_schedule(sessionmaker, owner, now + timedelta(seconds=30))
    due = await add_schedule(sessionmaker, owner, now - timedelta(seconds=1))
    with skewed_process_clock(monkeypatch, offset_s):
        await asyncio.gather(*(Scheduler(state).run_once() for _ in range(3)))
    # Counted per schedule: the scheduler also fires any other test's leftover due schedule.
    assert await jobs_of(sessionmaker, not_yet) == []  # a clock 60 s ahead does not fire early
    (job,) = await jobs_of(sessionmaker, due)  # a clock 60 s behind does not hold it back
    # The job's times are the shared clock's, not the skewed one's.
    assert abs((job.created_at - datetime.now(UTC)).total_seconds()) < 30


async def test_a_worker_killed_while_firing_loses_nothing(
    sessionmaker: Sessions, owner: Owner, state: WorkerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    instant = datetime.now(UTC) - timedelta(seconds=0.5)
    schedule_id = await add_schedule(sessionmaker, owner, instant)
    reached = asyncio.Event()

    async def hang(*args: Any, **kwargs: Any) -> Any:
        reached.set()  # the run row is written, the job not yet: now the worker dies
        await asyncio.Event().wait()

    monkeypatch.setattr("shared.services.schedules.insert_jobs", hang)
    victim = asyncio.create_task(Scheduler(state).run_once())
    await asyncio.wait_for(reached.wait(), 10)
    victim.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await victim
    assert await runs_of(sessionmaker, schedule_id) == []
    assert (await load(sessionmaker, schedule_id)).next_fire_at == instant  # still due
    monkeypatch.undo()
    assert await Scheduler(state).run_once() == 1
    (job,) = await jobs_of(sessionmaker, schedule_id)
    assert job.schedule_instant == instant


def two_missed_midnights() -> tuple[datetime, datetime]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1), today


async def test_misfire_skip_counts_the_missed_instants(
    sessionmaker: Sessions, owner: Owner, settings: Settings
) -> None:
    yesterday, today = two_missed_midnights()
    schedule_id = await add_schedule(sessionmaker, owner, yesterday, cron="0 0 * * *")
    async with worker_state(settings, schedule_misfire_grace_s=1) as state:
        assert await Scheduler(state).run_once() == 0
    assert await jobs_of(sessionmaker, schedule_id) == []
    assert await runs_of(sessionmaker, schedule_id) == []
    schedule = await load(sessionmaker, schedule_id)
    assert schedule.missed_count == 2
    assert schedule.next_fire_at == today + timedelta(days=1)


async def test_misfire_run_once_fires_one_catch_up_run(
    sessionmaker: Sessions, owner: Owner, settings: Settings
) -> None:
    yesterday, today = two_missed_midnights()
    schedule_id = await add_schedule(
        sessionmaker, owner, yesterday, cron="0 0 * * *", misfire="run_once"
    )
    async with worker_state(settings, schedule_misfire_grace_s=1) as state:
        created = await asyncio.gather(*(Scheduler(state).run_once() for _ in range(3)))
    assert sum(created) == 1
    (job,) = await jobs_of(sessionmaker, schedule_id)
    assert job.schedule_instant == today
    assert [run.instant for run in await runs_of(sessionmaker, schedule_id)] == [today]
    schedule = await load(sessionmaker, schedule_id)
    assert (schedule.missed_count, schedule.next_fire_at) == (1, today + timedelta(days=1))


async def test_overlap_skip_records_a_skipped_run(
    sessionmaker: Sessions, owner: Owner, state: WorkerState
) -> None:
    now = datetime.now(UTC)
    skip_id = await add_schedule(sessionmaker, owner, now - timedelta(seconds=1), overlap="skip")
    allow_id = await add_schedule(sessionmaker, owner, now - timedelta(seconds=1))
    for schedule_id in (skip_id, allow_id):  # a previous run, still queued
        job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/")
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(schedule_id=schedule_id, schedule_instant=now - timedelta(minutes=1))
            )
    assert await Scheduler(state).run_once() == 1
    (run,) = await runs_of(sessionmaker, skip_id)
    assert (run.status, run.skipped_because, run.job_id) == ("skipped", "overlap", None)
    assert len(await jobs_of(sessionmaker, skip_id)) == 1
    assert len(await jobs_of(sessionmaker, allow_id)) == 2


async def test_a_template_that_no_longer_validates_is_a_skipped_run(
    sessionmaker: Sessions, owner: Owner, state: WorkerState
) -> None:
    instant = datetime.now(UTC) - timedelta(seconds=1)
    schedule_id = await add_schedule(sessionmaker, owner, instant)
    async with sessionmaker.begin() as session:
        schedule = await session.get(Schedule, schedule_id)
        assert schedule is not None
        schedule.job = {**schedule.job, "agent_id": str(uuid.uuid4())}
    assert await Scheduler(state).run_once() == 0
    (run,) = await runs_of(sessionmaker, schedule_id)
    assert (run.status, run.skipped_because) == ("skipped", "agent_not_found")
    assert (await load(sessionmaker, schedule_id)).next_fire_at > instant  # does not spin


async def test_workers_fire_each_instant_once_and_run_the_jobs(
    sessionmaker: Sessions, owner: Owner, target: TargetServer, run_worker: RunWorker
) -> None:
    # Hourly, so that no further instant falls due while the test runs (with a minutely cron,
    # a minute starting mid-test fired a fourth instant); not in the last minute of an hour.
    hourly = "0 * * * *"
    now = datetime.now(UTC)
    if now.minute == 59:
        await asyncio.sleep(61 - now.second)
    first = minute_floor(datetime.now(UTC)).replace(minute=0) - timedelta(hours=2)
    schedule_id = await add_schedule(sessionmaker, owner, first, cron=hourly, url=target.url("/ok"))
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    later_id = await add_schedule(sessionmaker, owner, soon, cron=hourly, url=target.url("/ok"))

    def all_done(expected: int, sid: uuid.UUID) -> Callable[[], Any]:
        async def check() -> bool:
            jobs = await jobs_of(sessionmaker, sid)
            return len(jobs) >= expected and all(j.status == "succeeded" for j in jobs)

        return check

    grace = {"schedule_misfire_grace_s": 4 * 3600}
    async with run_worker(**grace), run_worker(**grace), run_worker(**grace):
        await eventually(all_done(3, schedule_id), 20, "three instants fired and run")
        await eventually(all_done(1, later_id), 20, "the upcoming instant fired and run")
        await asyncio.sleep(1.5)  # more passes of all three workers
    jobs = await jobs_of(sessionmaker, schedule_id)
    assert [j.schedule_instant for j in jobs] == [first + timedelta(hours=h) for h in range(3)]
    (later,) = await jobs_of(sessionmaker, later_id)
    assert later.schedule_instant == soon
    assert later.created_at >= soon  # never before its instant
    assert target.hits["/ok"] == 4

"""What a due schedule fires now: timely instants, misfire `skip` and `run_once`, long outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.cron import CronSchedule
from shared.services.schedules import plan_due

EVERY_MINUTE = CronSchedule.parse("* * * * *", "UTC")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
GRACE = 10.0


def minutes(*offsets: int) -> list[datetime]:
    return [T0 + timedelta(minutes=m) for m in offsets]


def test_a_timely_instant_fires_and_the_cursor_moves_to_the_next() -> None:
    plan = plan_due(EVERY_MINUTE, T0, T0 + timedelta(seconds=0.5), "skip", GRACE)
    assert plan.fire == [T0]
    assert plan.missed == 0
    assert plan.next_fire_at == T0 + timedelta(minutes=1)


def test_nothing_is_due_before_the_instant() -> None:
    plan = plan_due(EVERY_MINUTE, T0, T0 - timedelta(seconds=1), "skip", GRACE)
    assert plan.fire == []
    assert plan.next_fire_at == T0  # the stored cursor is due by definition: kept


def test_misfire_skip_counts_late_instants_and_fires_none() -> None:
    now = T0 + timedelta(minutes=1, seconds=30)  # T0 and T0+1 are both more than 10 s late
    plan = plan_due(EVERY_MINUTE, T0, now, "skip", GRACE)
    assert plan.fire == []
    assert plan.missed == 2
    assert plan.next_fire_at == T0 + timedelta(minutes=2)


def test_misfire_skip_still_fires_a_timely_instant() -> None:
    now = T0 + timedelta(minutes=2, seconds=3)
    plan = plan_due(EVERY_MINUTE, T0, now, "skip", GRACE)
    assert plan.fire == minutes(2)
    assert plan.missed == 2


def test_misfire_run_once_fires_the_latest_missed_instant_once() -> None:
    now = T0 + timedelta(minutes=1, seconds=30)
    plan = plan_due(EVERY_MINUTE, T0, now, "run_once", GRACE)
    assert plan.fire == minutes(1)
    assert plan.missed == 1
    assert plan.next_fire_at == T0 + timedelta(minutes=2)


def test_within_the_grace_every_due_instant_fires() -> None:
    now = T0 + timedelta(minutes=3)
    plan = plan_due(EVERY_MINUTE, T0, now, "skip", grace_s=3600)
    assert plan.fire == minutes(0, 1, 2, 3)
    assert plan.missed == 0


def test_a_long_outage_is_counted_in_chunks() -> None:
    now = T0 + timedelta(days=2)  # 2881 instants due
    cursor, missed = T0, 0
    fired: list[datetime] = []
    for _ in range(10):
        plan = plan_due(EVERY_MINUTE, cursor, now, "run_once", GRACE, limit=1000)
        cursor, missed = plan.next_fire_at, missed + plan.missed
        fired += plan.fire
        if cursor > now:
            break
    assert fired == [now]
    assert missed == 2880
    assert cursor == now + timedelta(minutes=1)

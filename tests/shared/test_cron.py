"""Cron expressions to UTC instants: validation, aliases, and DST days computed by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.cron import CronSchedule, InvalidCron, InvalidTimezone

BERLIN = ZoneInfo("Europe/Berlin")


def local_day(expression: str, timezone: str, day: str) -> list[str]:
    """Every fire time on one local calendar day, as local ISO times with their offset."""
    zone = ZoneInfo(timezone)
    start = datetime.fromisoformat(day).replace(tzinfo=zone)
    end = start + timedelta(days=1)  # wall-clock midnight to midnight
    cron = CronSchedule.parse(expression, timezone)
    out = []
    for instant in cron.fire_times(start.astimezone(UTC), inclusive=True):
        if instant >= end.astimezone(UTC):
            break
        out.append(instant.astimezone(zone).isoformat())
    return out


def hours(day: str, offsets: list[tuple[int, str]], minutes: tuple[int, ...] = (0,)) -> list[str]:
    """Local times `day`T<hour>:<minute> with the given UTC offset per hour, in order."""
    return [f"{day}T{hour:02d}:{minute:02d}:00{off}" for hour, off in offsets for minute in minutes]


SPRING = "2026-03-29"  # Europe/Berlin: 02:00 CET -> 03:00 CEST (01:00Z)
FALL = "2026-10-25"  # Europe/Berlin: 03:00 CEST -> 02:00 CET (01:00Z)
SPRING_HOURS = [(h, "+01:00") for h in (0, 1)] + [(h, "+02:00") for h in range(3, 24)]
FALL_HOURS = (
    [(h, "+02:00") for h in (0, 1, 2)] + [(2, "+01:00")] + [(h, "+01:00") for h in range(3, 24)]
)


def test_fixed_time_in_the_skipped_hour_runs_right_after_the_change() -> None:
    # 02:30 does not exist on the spring day: it runs once, when the clock jumps to 03:00.
    assert local_day("30 2 * * *", "Europe/Berlin", SPRING) == ["2026-03-29T03:00:00+02:00"]
    assert local_day("0 2 * * *", "Europe/Berlin", SPRING) == ["2026-03-29T03:00:00+02:00"]
    # Two skipped times of one schedule make one run.
    assert local_day("0,30 2 * * *", "Europe/Berlin", SPRING) == ["2026-03-29T03:00:00+02:00"]
    # The day before and after are plain.
    assert local_day("30 2 * * *", "Europe/Berlin", "2026-03-30") == ["2026-03-30T02:30:00+02:00"]


def test_fixed_time_in_the_repeated_hour_runs_once() -> None:
    assert local_day("30 2 * * *", "Europe/Berlin", FALL) == ["2026-10-25T02:30:00+02:00"]
    assert CronSchedule.parse("30 2 * * *", "Europe/Berlin").upcoming(
        datetime(2026, 10, 24, 12, tzinfo=UTC), 2
    ) == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_hourly_follows_real_hours_across_both_changes() -> None:
    spring = local_day("0 * * * *", "Europe/Berlin", SPRING)
    assert spring == hours(SPRING, SPRING_HOURS)
    assert len(spring) == 23
    fall = local_day("0 * * * *", "Europe/Berlin", FALL)
    assert fall == hours(FALL, FALL_HOURS)
    assert len(fall) == 25
    assert local_day("@hourly", "Europe/Berlin", FALL) == fall


def test_every_quarter_hour_across_both_changes() -> None:
    quarters = (0, 15, 30, 45)
    spring = local_day("*/15 * * * *", "Europe/Berlin", SPRING)
    assert spring == hours(SPRING, SPRING_HOURS, quarters)
    assert len(spring) == 92
    fall = local_day("*/15 * * * *", "Europe/Berlin", FALL)
    assert fall == hours(FALL, FALL_HOURS, quarters)
    assert len(fall) == 100
    utc = [datetime.fromisoformat(t) for t in fall]
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(utc))


def test_wildcard_hour_field_in_the_changed_hour() -> None:
    # `*` in the minute field: cron runs these on the clock as shown.
    assert local_day("*/15 2 * * *", "Europe/Berlin", SPRING) == []
    assert local_day("*/30 2 * * *", "Europe/Berlin", FALL) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


def test_new_york_changes() -> None:
    assert local_day("30 2 * * *", "America/New_York", "2026-03-08") == [
        "2026-03-08T03:00:00-04:00"
    ]
    assert local_day("30 1 * * *", "America/New_York", "2026-11-01") == [
        "2026-11-01T01:30:00-04:00"
    ]


def test_starting_inside_the_repeated_hour() -> None:
    cron = CronSchedule.parse("*/15 * * * *", "Europe/Berlin")
    # 00:50Z is 02:50 CEST: next come 02:00..02:45 CET (01:00Z..01:45Z), then 03:00 CET.
    after_first = cron.upcoming(datetime(2026, 10, 25, 0, 50, tzinfo=UTC), 5)
    assert [t.strftime("%H:%M") for t in after_first] == [
        "01:00",
        "01:15",
        "01:30",
        "01:45",
        "02:00",
    ]
    # 01:10Z is 02:10 CET, the second time round.
    after_second = cron.upcoming(datetime(2026, 10, 25, 1, 10, tzinfo=UTC), 2)
    assert [t.strftime("%H:%M") for t in after_second] == ["01:15", "01:30"]


@pytest.mark.parametrize("timezone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("expression", ["*/15 * * * *", "0 * * * *", "30 2 * * *", "15 1-3 * * *"])
def test_fire_times_ascend_without_repeats_around_changes(expression: str, timezone: str) -> None:
    cron = CronSchedule.parse(expression, timezone)
    for day in ("2026-03-27", "2026-04-03", "2026-10-23", "2026-10-30"):
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        times = cron.fire_times(start)
        seen = [next(times) for _ in range(12 if "*/15" not in expression else 400)]
        assert all(a < b for a, b in itertools.pairwise(seen)), (day, seen)
        assert seen[0] > start


def test_next_after_is_strict_and_inclusive_is_not() -> None:
    cron = CronSchedule.parse("0 12 * * *", "UTC")
    noon = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert cron.next_after(noon) == noon + timedelta(days=1)
    assert next(cron.fire_times(noon, inclusive=True)) == noon
    assert cron.next_after(noon - timedelta(microseconds=1)) == noon


@pytest.mark.parametrize(
    ("alias", "expression"),
    [("@yearly", "0 0 1 1 *"), ("@ANNUALLY", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
     ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
     ("@hourly", "0 * * * *")],
)  # fmt: skip
def test_aliases(alias: str, expression: str) -> None:
    assert CronSchedule.parse(alias, "UTC").expression == expression


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [("61 * * * *", "out of range"), ("* * *", "5 fields"), ("* * * * * *", "5 fields"),
     ("0 0 30 2 *", "never fires"), ("@reboot", "Unknown cron alias"), ("H * * * *", "Hashed"),
     ("R 0 * * *", "random"), ("*/0 * * * *", "Invalid"), ("a b c d e", "Invalid"),
     ("0 0 * * mon-", "Invalid")],
)  # fmt: skip
def test_invalid_expressions(expression: str, fragment: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        CronSchedule.parse(expression, "UTC")
    assert caught.value.code == "invalid_cron"
    assert fragment.lower() in caught.value.message.lower()


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "", " UTC", "../etc/passwd", "Europe", "/etc/localtime", "a\x00b"]
)
def test_invalid_timezones(timezone: str) -> None:
    with pytest.raises(InvalidTimezone) as caught:
        CronSchedule.parse("* * * * *", timezone)
    assert caught.value.code == "invalid_timezone"


def test_names_and_extensions_are_accepted() -> None:
    cron = CronSchedule.parse("0 9 * * mon-fri", "Europe/Berlin")
    saturday = datetime(2026, 5, 2, tzinfo=UTC)
    assert cron.next_after(saturday) == datetime(2026, 5, 4, 7, tzinfo=UTC)  # Monday 09:00 CEST
    assert CronSchedule.parse("0 0 L * *", "UTC").next_after(saturday) == datetime(
        2026, 5, 31, tzinfo=UTC
    )


def test_shortest_interval() -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    assert CronSchedule.parse("*/5 * * * *", "UTC").shortest_interval_s(start, below=600) == 300
    assert CronSchedule.parse("0,1 3 * * *", "UTC").shortest_interval_s(start, below=600) == 60
    assert CronSchedule.parse("0 * * * *", "UTC").shortest_interval_s(start, below=600) == 3600
    # Nothing can be closer than cron's minute: no walk is needed for a limit of 60 s.
    assert CronSchedule.parse("* * * * *", "UTC").shortest_interval_s(start, below=60) > 60

"""Cron expressions in an IANA timezone, turned into UTC fire instants (DST handled like cron).

croniter parses the expression and walks matching *wall-clock* times (naive datetimes, so it
never applies a UTC offset itself); this module maps each wall-clock match to UTC with the rules
of Vixie/Debian cron (cron(8), "Special considerations ... daylight savings time"):

- Fixed-time expressions (no `*` in the minute or the hour field, e.g. `30 2 * * *`,
  `@daily`): a time skipped by a spring-forward runs once, right after the change (the
  instant the clock jumps, e.g. 03:00 CEST); a time repeated by a fall-back runs once, at its
  first occurrence.
- Wildcard expressions (`*` in the minute or hour field, e.g. `0 * * * *`, `*/15 * * * *`,
  `@hourly`): they follow the wall clock as it is shown, so skipped times do not run and
  repeated times run twice: `0 * * * *` fires every real hour, 23 times on the spring day and
  25 times on the autumn day.

Several skipped times of one expression map to the same instant and fire once. Expressions have
five fields (minute hour day-of-month month day-of-week, day fields OR-ed as in cron) or are one
of the aliases below; croniter's `L`, `W`, `#` and names are accepted, its hashed (`H`) and
random (`R`) extensions are not (they are not cron).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from shared.errors import ValidationFailed

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Offsets move by at most a few hours at a transition: how far back a fall-back can repeat.
MAX_TRANSITION = timedelta(hours=3)
_TOKEN_SPLIT = re.compile(r"[,/#-]")
_ONE_US = timedelta(microseconds=1)


class InvalidCron(ValidationFailed):
    code = "invalid_cron"


class InvalidTimezone(ValidationFailed):
    code = "invalid_timezone"


def _load_zone(name: str) -> ZoneInfo:
    if not name or name != name.strip() or name.lower() == "localtime":
        raise InvalidTimezone(f"Unknown timezone {name!r}: use an IANA name like Europe/Berlin.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidTimezone(
            f"Unknown timezone {name!r}: use an IANA name like Europe/Berlin or UTC."
        ) from exc


def _normalize(expression: str) -> str:
    text = " ".join(expression.split())
    if text.startswith("@"):
        alias = ALIASES.get(text.lower())
        if alias is None:
            names = ", ".join(sorted(ALIASES))
            raise InvalidCron(f"Unknown cron alias {text!r}; use one of {names}.")
        return alias
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidCron(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"not {len(fields)}: {text!r}."
        )
    for part in fields:
        tokens = {token.upper() for token in _TOKEN_SPLIT.split(part)}
        if tokens & {"H", "R"} or part.upper().startswith("H("):
            raise InvalidCron(f"Hashed (H) and random (R) fields are not supported: {text!r}.")
    return text


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression in a timezone; yields its fire instants in UTC."""

    expression: str
    timezone: str
    zone: ZoneInfo = field(repr=False, compare=False)
    fixed_time: bool = field(compare=False)

    @classmethod
    def parse(cls, expression: str, timezone: str) -> CronSchedule:
        """Validate; InvalidCron / InvalidTimezone (422s) with a message a user can act on.
        Parsed schedules are immutable and cached (every API view and firing parses)."""
        return _parse(expression, timezone)

    @classmethod
    def _build(cls, expression: str, timezone: str) -> CronSchedule:
        zone = _load_zone(timezone)
        text = _normalize(expression)
        try:
            croniter(text, datetime(2000, 1, 1))
        except Exception as exc:  # the parser's verdict, whatever it raises
            raise InvalidCron(f"Invalid cron expression {expression!r}: {exc}") from exc
        minute, hour = text.split(" ")[:2]
        fixed = not any(ch in minute + hour for ch in "*?")
        schedule = cls(expression=text, timezone=timezone, zone=zone, fixed_time=fixed)
        try:
            schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        except CroniterError as exc:
            raise InvalidCron(f"The cron expression {expression!r} never fires.") from exc
        except Exception as exc:
            raise InvalidCron(f"Invalid cron expression {expression!r}: {exc}") from exc
        return schedule

    def _local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _utc(self, naive: datetime, fold: int) -> datetime:
        return naive.replace(tzinfo=self.zone, fold=fold).astimezone(UTC)

    def _exists(self, naive: datetime, instant: datetime) -> bool:
        return self._local(instant) == naive

    def _jump(self, naive: datetime) -> datetime:
        """The instant a spring-forward skips over `naive`: the first one showing a later time."""
        low, high = sorted((self._utc(naive, 0), self._utc(naive, 1)))
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if self._local(middle) > naive:
                high = middle
            else:
                low = middle
        return high.replace(microsecond=0)

    def _instants(self, naive: datetime) -> list[datetime]:
        """The UTC instants a wall-clock match fires at (see the module docstring)."""
        first, second = self._utc(naive, 0), self._utc(naive, 1)
        first_ok, second_ok = self._exists(naive, first), self._exists(naive, second)
        if not first_ok and not second_ok:  # skipped by a spring-forward
            return [self._jump(naive)] if self.fixed_time else []
        if first_ok and second_ok and first != second:  # repeated by a fall-back
            return [first] if self.fixed_time else sorted((first, second))
        return [first if first_ok else second]

    def _earliest(self, naive: datetime) -> datetime:
        """The earliest instant whose wall clock shows `naive` or later (monotonic in `naive`)."""
        instants = [i for i in (self._utc(naive, 0), self._utc(naive, 1)) if self._exists(naive, i)]
        return min(instants) if instants else self._jump(naive)

    def fire_times(self, after: datetime, *, inclusive: bool = False) -> Iterator[datetime]:
        """Fire instants (UTC, ascending, no repeats) later than `after` (or equal, if
        `inclusive`). Raises croniter's CroniterBadDateError for an expression that stops
        matching."""
        after = after.astimezone(UTC)
        offset = after.astimezone(self.zone).utcoffset() or timedelta()
        later = (after + MAX_TRANSITION).astimezone(self.zone).utcoffset() or timedelta()
        # A fall-back soon after `after` repeats wall-clock times just before local(after).
        start = self._local(after) - max(offset - later, timedelta()) - _ONE_US
        walker = croniter(self.expression, start)
        pending: list[datetime] = []
        last: datetime | None = None
        while True:
            naive: datetime = walker.get_next(datetime)
            for instant in self._instants(naive):
                if instant > after or (inclusive and instant == after):
                    heapq.heappush(pending, instant)
            # Later matches cannot fire before this bound, so what lies below it is final.
            bound = self._earliest(naive)
            while pending and pending[0] <= bound:
                instant = heapq.heappop(pending)
                if instant != last:
                    last = instant
                    yield instant

    def next_after(self, after: datetime) -> datetime:
        """The first fire instant strictly after `after`."""
        return next(self.fire_times(after))

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire instants after `after`."""
        times = self.fire_times(after)
        return [next(times) for _ in range(count)]

    def shortest_interval_s(self, start: datetime, *, below: float, steps: int = 1000) -> float:
        """The shortest gap between consecutive wall-clock matches seen in the next `steps`
        matches (up to a year on), stopping early at one shorter than `below`. Cron's
        resolution is a minute, so anything at or under 60 s needs no walk."""
        if below <= 60:
            return float("inf")
        walker = croniter(self.expression, self._local(start))
        previous: datetime = walker.get_next(datetime)
        horizon = previous + timedelta(days=366)
        shortest = float("inf")
        for _ in range(steps):
            current: datetime = walker.get_next(datetime)
            shortest = min(shortest, (current - previous).total_seconds())
            if shortest < below or current > horizon:
                break
            previous = current
        return shortest


@lru_cache(maxsize=4096)
def _parse(expression: str, timezone: str) -> CronSchedule:
    return CronSchedule._build(expression, timezone)

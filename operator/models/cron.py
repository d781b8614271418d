"""Cron math for FaultSchedules: when runs are due, which missed run to start, time windows.

Pure functions of their arguments (the clock is always passed in), so the operator computes
every due time from what status persisted, and tests need no clock.

Schedules (Kubernetes CronJob syntax, minute resolution):

- five fields ``minute hour day-of-month month day-of-week`` with ``*``, ``a``, ``a-b``,
  ``*/n``, ``a-b/n``, ``a/n`` (from a to the end) and lists ``a,b-c``; months ``JAN``-``DEC``
  and weekdays ``SUN``-``SAT`` by name (any case); Sunday is 0 or 7; ``?`` means ``*`` in the
  day fields. When both day fields are restricted (neither starts with ``*``/``?``), a day
  matching either runs (cron's historical OR rule);
- ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``;
- ``@every 30s`` / ``@every 5m`` / ``@every 1h30m``: fixed intervals counted from the Unix
  epoch (so ``@every 1h`` runs on the hour, ``@every 30s`` at :00 and :30), second
  resolution. Intervals do not depend on the time zone.

Time zones: fields are matched against the wall clock of the schedule's zone (UTC when none
is given). Across daylight-saving changes, as Kubernetes CronJob (robfig/cron) does, a wall
time that does not exist (the hour skipped in spring) does not run; a wall time that exists
twice (the hour repeated in autumn) runs once, at its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTE = timedelta(minutes=1)
#: More unmet runs than this between the last run and now is reported (CronJob's 100).
TOO_MANY_MISSED = 100
#: How far ahead a schedule is searched for its next run (covers Feb 29 on a given weekday).
_HORIZON_YEARS = 30

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: Python's weekday() (Monday 0) -> cron's (Sunday 0).
_CRON_WEEKDAY = (1, 2, 3, 4, 5, 6, 0)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most each can have

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = re.compile(r"^@every\s+(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class CronError(ValueError):
    """A schedule, time zone or window that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day of week", 0, 7, WEEKDAYS, 0),
)


def _value(text: str, field: _Field) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.name_base
    if not text.isdigit():
        names = f" or a name ({field.names[0]}..{field.names[-1]})" if field.names else ""
        raise CronError(f"{field.name}: {text!r} is not a number{names}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field.name}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field.name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base in ("*", "?"):
            if base == "?" and field.name not in ("day of month", "day of week"):
                raise CronError(f"{field.name}: '?' is only allowed in the day fields")
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                raise CronError(f"{field.name}: range {base!r} runs backwards")
        else:
            low = _value(base, field)
            high = field.high if slash else low  # "5/15": from 5 to the end, every 15
        values.update(range(low, high + 1, step))
    if field.name == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)  # 7 is Sunday too
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: five cron fields, or a fixed interval (``every`` seconds)."""

    text: str
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()  # Sunday 0
    days_restricted: bool = False
    weekdays_restricted: bool = False
    every: int | None = None

    @classmethod
    def parse(cls, text: str) -> Cron:
        spec = " ".join(text.split())
        if not spec:
            raise CronError("the schedule is empty")
        if spec.upper().startswith(("TZ=", "CRON_TZ=")):
            raise CronError("put the time zone in spec.timeZone, not in the schedule")
        lowered = spec.lower()
        if lowered.startswith("@every"):
            match = _EVERY.match(lowered)
            if not match or not any(match.groups()):
                raise CronError(f"{text!r}: write intervals as @every 30s, @every 5m, @every 1h30m")
            h, m, s = (int(g) if g else 0 for g in match.groups())
            seconds = h * 3600 + m * 60 + s
            if seconds < 1:
                raise CronError("@every needs an interval of at least 1s")
            return cls(text=text, every=seconds)
        if lowered.startswith("@"):
            if lowered not in MACROS:
                raise CronError(f"unknown {spec!r}; use one of {', '.join(MACROS)} or @every")
            spec = MACROS[lowered]
        parts = spec.split(" ")
        if len(parts) != 5:
            raise CronError(
                f"{text!r} has {len(parts)} field(s); a schedule has five "
                "(minute hour day-of-month month day-of-week), or is @hourly, @every 5m, ..."
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
        )
        cron = cls(
            text=text,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=weekdays,
            days_restricted=parts[2][0] not in "*?",
            weekdays_restricted=parts[4][0] not in "*?",
        )
        if not cron.weekdays_restricted and not any(
            day <= _DAYS_IN_MONTH[month - 1] for month in months for day in days
        ):
            raise CronError(f"{text!r} never runs: no such day in the months it names")
        return cron

    @property
    def unit(self) -> int:
        """Seconds per step of a run's number: 1 for intervals, 60 for cron fields (runs are
        whole minutes, as CronJob numbers its Jobs)."""
        return 1 if self.every is not None else 60

    def day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = _CRON_WEEKDAY[day.weekday()] in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_wall(self, wall: datetime) -> datetime:
        """The first naive wall-clock minute >= `wall` (a whole minute) the fields match."""
        limit = wall.year + _HORIZON_YEARS
        t = wall
        while t.year <= limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
            elif not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += MINUTE
            else:
                return t
        raise CronError(f"{self.text!r} does not run within {_HORIZON_YEARS} years")


def _first_of_next_month(t: datetime) -> datetime:
    if t.month == 12:
        return t.replace(year=t.year + 1, month=1, day=1, hour=0, minute=0)
    return t.replace(month=t.month + 1, day=1, hour=0, minute=0)


def zone(name: str | None) -> tzinfo:
    """An IANA time zone by name (None: UTC)."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"unknown time zone {name!r}; use an IANA name like Europe/Berlin"
        raise CronError(message) from None


def _instant(wall: datetime, tz: tzinfo) -> datetime | None:
    """The first instant the wall clock of `tz` shows `wall`; None if it never does (the
    hour skipped when daylight-saving time starts)."""
    aware = wall.replace(tzinfo=tz, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return instant


@dataclass(frozen=True)
class Schedule:
    """A cron (or interval) in a time zone: the one thing that says when runs are due."""

    cron: Cron
    tz: tzinfo = UTC

    @classmethod
    def parse(cls, text: str, time_zone: str | None = None) -> Schedule:
        return cls(Cron.parse(text), zone(time_zone))

    @property
    def unit(self) -> int:
        return self.cron.unit

    def number(self, scheduled: datetime) -> int:
        """A run's number, for its deterministic name: Unix seconds (intervals) or minutes."""
        return int(scheduled.timestamp()) // self.unit

    def next_after(self, after: datetime) -> datetime:
        """The first scheduled instant strictly after `after` (aware), in UTC."""
        after = after.astimezone(UTC)
        every = self.cron.every
        if every is not None:
            seconds = int(after.timestamp()) // every * every + every
            return datetime.fromtimestamp(seconds, UTC)
        wall = after.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0) + MINUTE
        while True:
            wall = self.cron.next_wall(wall)
            instant = _instant(wall, self.tz)
            # Skipped (None), or a repeated wall time whose first occurrence is past: go on.
            if instant is not None and instant > after:
                return instant
            wall += MINUTE

    def times(self, after: datetime, until: datetime) -> Iterable[datetime]:
        """Every scheduled instant in (after, until], oldest first."""
        t = self.next_after(after)
        while t <= until:
            yield t
            t = self.next_after(t)

    def latest(self, after: datetime, until: datetime) -> datetime | None:
        """The most recent scheduled instant in (after, until], or None; fast however many
        instants there are (it searches back from `until` in growing steps)."""
        after, until = after.astimezone(UTC), until.astimezone(UTC)
        if after >= until:
            return None
        every = self.cron.every
        if every is not None:
            seconds = int(until.timestamp()) // every * every
            found = datetime.fromtimestamp(seconds, UTC)
            return found if found > after else None
        step = MINUTE
        while True:
            start = max(after, until - step)
            first = self.next_after(start)
            if first <= until:
                last = first
                for t in self.times(first, until):
                    last = t
                return last
            if start == after:
                return None
            step *= 2


@dataclass(frozen=True)
class Due:
    """What is due at `now`, given the last scheduled run (CronJob's rules)."""

    #: The most recent scheduled time in (last, now] not run yet; None: nothing is due.
    time: datetime | None
    #: False when `time` is past its starting deadline (then it is not started).
    startable: bool
    #: Unmet scheduled times in (last, now] (within the deadline, when one is set), capped
    #: at TOO_MANY_MISSED + 1.
    unmet: int
    #: The first scheduled time after `now`.
    next_time: datetime

    @property
    def too_many_missed(self) -> bool:
        return self.unmet > TOO_MANY_MISSED

    @property
    def skipped(self) -> int:
        """Older unmet times that are never started (only the most recent one may be)."""
        return max(0, self.unmet - 1)


def due(
    schedule: Schedule,
    last: datetime,
    now: datetime,
    starting_deadline: int | None = None,
) -> Due:
    """Kubernetes CronJob's missed-run rule.

    `last` is the last scheduled time already taken (or the schedule's creation time). Of
    all the times in (last, now] only the most recent may start, and only if it is at most
    `starting_deadline` seconds late when a deadline is set. Unmet times are counted from
    `last`, or from `now - starting_deadline` when that is later; more than TOO_MANY_MISSED
    is reported (the run still starts, as CronJob does since its v2 controller).
    """
    latest = schedule.latest(last, now)
    counted_from = last
    if starting_deadline is not None:
        counted_from = max(last, now - timedelta(seconds=starting_deadline))
    unmet = 0
    for _ in schedule.times(counted_from, now):
        unmet += 1
        if unmet > TOO_MANY_MISSED:
            break
    startable = latest is not None and (
        starting_deadline is None or latest + timedelta(seconds=starting_deadline) >= now
    )
    return Due(time=latest, startable=startable, unmet=unmet, next_time=schedule.next_after(now))


# --- time windows ----------------------------------------------------------------------------

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # Python's weekday() order
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def clock_minutes(text: str) -> int:
    """'09:30' -> 570; '24:00' (an end of day) -> 1440."""
    match = _CLOCK.match(text)
    if not match:
        raise CronError(f"{text!r} is not a time of day; write HH:MM, e.g. 09:00 or 17:30")
    if text == "24:00":
        return 24 * 60
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True)
class Window:
    """Days (Monday 0) and a wall-clock span [start, end) in minutes of the day. An end at
    or before the start runs past midnight: the span starts on one of the days."""

    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, days: Sequence[str], start: str, end: str) -> Window:
        names = [d[:1].upper() + d[1:3].lower() for d in days]
        unknown = [d for d, n in zip(days, names, strict=True) if n not in DAY_NAMES]
        if unknown:
            raise CronError(f"unknown day(s) {unknown}; use {', '.join(DAY_NAMES)}")
        first, last = clock_minutes(start), clock_minutes(end)
        if first == 24 * 60:
            raise CronError("a window cannot start at 24:00")
        chosen = frozenset(DAY_NAMES.index(n) for n in names) if names else frozenset(range(7))
        return cls(days=chosen, start=first, end=last)

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Past midnight: the evening of a listed day, or the morning after one.
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


def in_windows(instant: datetime, windows: Sequence[Window], tz: tzinfo = UTC) -> bool:
    """Whether `instant` falls in one of the windows (in the zone's wall clock); no windows
    means always."""
    if not windows:
        return True
    local = instant.astimezone(tz)
    return any(w.contains(local) for w in windows)

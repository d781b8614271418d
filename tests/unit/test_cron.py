"""FaultSchedule's time math: cron fields, intervals, time zones (DST), missed runs, windows.

Every expectation is a fixed instant worked out by hand (calendar dates named in comments);
no test reads the clock.
"""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from faultline.models.cron import (
    TOO_MANY_MISSED,
    Cron,
    CronError,
    Schedule,
    Window,
    due,
    in_windows,
    zone,
)
from faultline.models.schedule import (
    MAX_SCHEDULE_NAME,
    FaultScheduleSpec,
    FaultScheduleStatus,
    Weekday,
    child_name,
)
from faultline.reconcile.handle_kill_switch import KillSwitches, Settings
from faultline.reconcile.handle_schedule import (
    BLOCKED_RECHECK,
    Child,
    Conflict,
    ScheduleDriver,
    Wakeups,
    child_manifest,
    spec_unseen,
    status_body,
    to_prune,
    wake_targets,
)
from faultline.reconcile.kube import KubeError

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def nexts(text: str, after: datetime, n: int, tz: str | None = None) -> list[datetime]:
    schedule = Schedule.parse(text, tz)
    out = []
    for _ in range(n):
        after = schedule.next_after(after)
        out.append(after)
    return out


# --- five fields -----------------------------------------------------------------------------


def test_every_minute_and_steps() -> None:
    assert nexts("* * * * *", utc(2024, 3, 1, 10, 7, 30), 2) == [
        utc(2024, 3, 1, 10, 8),
        utc(2024, 3, 1, 10, 9),
    ]
    # Strictly after: a time on the schedule is not its own next time.
    assert nexts("*/15 * * * *", utc(2024, 3, 1, 10, 15), 3) == [
        utc(2024, 3, 1, 10, 30),
        utc(2024, 3, 1, 10, 45),
        utc(2024, 3, 1, 11, 0),
    ]


def test_ranges_steps_and_lists() -> None:
    cron = Cron.parse("10-30/10 8,20 * * *")
    assert cron.minutes == {10, 20, 30}
    assert cron.hours == {8, 20}
    assert Cron.parse("5/20 * * * *").minutes == {5, 25, 45}  # from 5 to the end
    assert Cron.parse("0-4,50-59/5 * * * *").minutes == {0, 1, 2, 3, 4, 50, 55}
    assert nexts("10-30/10 8,20 * * *", utc(2024, 3, 1, 8, 30), 2) == [
        utc(2024, 3, 1, 20, 10),
        utc(2024, 3, 1, 20, 20),
    ]


def test_names_of_months_and_days() -> None:
    assert Cron.parse("0 0 1 JAN,jul *").months == {1, 7}
    assert Cron.parse("0 0 * Mar-May *").months == {3, 4, 5}
    assert Cron.parse("0 9 * * MON-FRI").weekdays == {1, 2, 3, 4, 5}
    # Sunday is SUN, 0 and 7.
    assert Cron.parse("0 12 * * sun").weekdays == Cron.parse("0 12 * * 7").weekdays == {0}
    assert Cron.parse("0 12 * * 5-7").weekdays == {0, 5, 6}
    # 2024-03-01 is a Friday: after its 10:00, the next weekday 09:00 is Monday the 4th.
    assert nexts("0 9 * * MON-FRI", utc(2024, 3, 1, 10, 0), 2) == [
        utc(2024, 3, 4, 9, 0),
        utc(2024, 3, 5, 9, 0),
    ]
    assert nexts("0 0 1 JAN,jul *", utc(2024, 3, 1), 2) == [utc(2024, 7, 1), utc(2025, 1, 1)]


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either matches (2024-09-01 is a Sunday; the 6th a Friday; the 13th
    # both; the 20th a Friday).
    assert nexts("0 0 13 * FRI", utc(2024, 9, 1), 3) == [
        utc(2024, 9, 6),
        utc(2024, 9, 13),
        utc(2024, 9, 20),
    ]
    # "*/2" starts with "*": not a restriction, so both must match (odd days that are
    # Mondays: 2024-09-02 is a Monday but even; the 9th is a Monday and odd).
    assert nexts("0 0 */2 * MON", utc(2024, 9, 1), 1) == [utc(2024, 9, 9)]


def test_february_29th_and_month_ends() -> None:
    assert nexts("0 0 29 2 *", utc(2024, 3, 1), 1) == [utc(2028, 2, 29)]
    assert nexts("0 0 31 * *", utc(2024, 4, 1), 2) == [utc(2024, 5, 31), utc(2024, 7, 31)]
    assert nexts("59 23 31 12 *", utc(2024, 12, 31, 23, 59), 1) == [utc(2025, 12, 31, 23, 59)]


@pytest.mark.parametrize(
    ("macro", "after", "first"),
    [
        ("@hourly", utc(2024, 3, 1, 10, 0), utc(2024, 3, 1, 11, 0)),
        ("@daily", utc(2024, 3, 1, 10, 0), utc(2024, 3, 2)),
        ("@midnight", utc(2024, 3, 1, 10, 0), utc(2024, 3, 2)),
        ("@weekly", utc(2024, 3, 1, 10, 0), utc(2024, 3, 3)),  # the next Sunday
        ("@monthly", utc(2024, 3, 1, 10, 0), utc(2024, 4, 1)),
        ("@yearly", utc(2024, 3, 1, 10, 0), utc(2025, 1, 1)),
        ("@annually", utc(2024, 3, 1, 10, 0), utc(2025, 1, 1)),
        ("@HOURLY", utc(2024, 3, 1, 10, 30), utc(2024, 3, 1, 11, 0)),
    ],
)
def test_macros(macro: str, after: datetime, first: datetime) -> None:
    assert Schedule.parse(macro).next_after(after) == first


def test_every_interval_is_aligned_to_the_epoch() -> None:
    assert nexts("@every 5s", utc(2024, 3, 1, 12, 0, 3), 3) == [
        utc(2024, 3, 1, 12, 0, 5),
        utc(2024, 3, 1, 12, 0, 10),
        utc(2024, 3, 1, 12, 0, 15),
    ]
    assert nexts("@every 5s", utc(2024, 3, 1, 12, 0, 5), 1) == [utc(2024, 3, 1, 12, 0, 10)]
    assert nexts("@every 1h", utc(2024, 3, 1, 12, 0, 1), 1) == [utc(2024, 3, 1, 13)]
    assert nexts("@every 2m", utc(2024, 3, 1, 12, 1), 1) == [utc(2024, 3, 1, 12, 2)]
    # 90 minutes: multiples of 5400 s since 1970 (2024-03-01 00:00 UTC is one of them).
    assert nexts("@every 1h30m", utc(2024, 3, 1, 0, 0, 1), 2) == [
        utc(2024, 3, 1, 1, 30),
        utc(2024, 3, 1, 3, 0),
    ]
    # A time zone changes nothing for an interval.
    assert nexts("@every 30s", utc(2024, 3, 31, 0, 59, 45), 1, BERLIN) == [utc(2024, 3, 31, 1)]
    assert Cron.parse("@every 90s").every == 90
    assert Cron.parse("@every   10m").every == 600


def test_run_numbers_name_children() -> None:
    every = Schedule.parse("@every 5s")
    cron = Schedule.parse("*/5 * * * *")
    t = utc(2024, 3, 1, 12, 0)
    assert every.number(t) == int(t.timestamp())  # seconds for intervals
    assert cron.number(t) == int(t.timestamp()) // 60  # minutes, as CronJob names Jobs
    assert child_name("chaos", every, t) == f"chaos-{int(t.timestamp())}"
    assert len(child_name("x" * MAX_SCHEDULE_NAME, every, t)) <= 63


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("* * * *", "has 4 field(s)"),
        ("* * * * * *", "has 6 field(s)"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24"),
        ("* * 0 * *", "day of month: 0"),
        ("* * * 13 *", "month: 13"),
        ("* * * * 8", "day of week: 8"),
        ("* * * FOO *", "'FOO' is not a number or a name (JAN..DEC)"),
        ("* * * * MON-FOO", "'FOO'"),
        ("*/0 * * * *", "step '0'"),
        ("5-1 * * * *", "runs backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("? * * * *", "only allowed in the day fields"),
        ("0 0 31 2 *", "never runs"),
        ("0 0 30,31 2 *", "never runs"),
        ("@fortnightly", "unknown '@fortnightly'"),
        ("@every", "write intervals as"),
        ("@every 0s", "at least 1s"),
        ("@every 5x", "write intervals as"),
        ("TZ=Europe/Berlin 0 9 * * *", "spec.timeZone"),
        ("CRON_TZ=UTC 0 9 * * *", "spec.timeZone"),
        ("   ", "empty"),
    ],
)
def test_bad_schedules_say_why(text: str, fragment: str) -> None:
    with pytest.raises(CronError) as err:
        Cron.parse(text)
    assert fragment in str(err.value)


def test_day_fields_accept_question_mark() -> None:
    assert Cron.parse("0 0 ? * MON").weekdays == {1}
    assert not Cron.parse("0 0 ? * MON").days_restricted


# --- time zones and daylight-saving time -----------------------------------------------------


def test_time_zone_wall_clock() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST).
    assert nexts("0 9 * * *", utc(2024, 1, 15, 12), 1, BERLIN) == [utc(2024, 1, 16, 8)]
    assert nexts("0 9 * * *", utc(2024, 7, 15, 12), 1, BERLIN) == [utc(2024, 7, 16, 7)]
    # New York: 09:00 EST is 14:00 UTC.
    assert nexts("0 9 * * *", utc(2024, 1, 15, 15), 1, "America/New_York") == [utc(2024, 1, 16, 14)]
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
    assert zone(None) is UTC


def test_dst_spring_forward_skips_the_missing_hour() -> None:
    # Berlin, 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    assert nexts("30 2 * * *", utc(2024, 3, 30, 12), 2, BERLIN) == [
        utc(2024, 4, 1, 0, 30),  # 02:30 CEST on April 1st
        utc(2024, 4, 2, 0, 30),
    ]
    # Every 30 minutes across the gap: 01:30 CET (00:30Z), then 03:00 CEST (01:00Z).
    assert nexts("*/30 * * * *", utc(2024, 3, 31, 0, 15), 3, BERLIN) == [
        utc(2024, 3, 31, 0, 30),
        utc(2024, 3, 31, 1, 0),
        utc(2024, 3, 31, 1, 30),
    ]


def test_dst_fall_back_runs_a_repeated_time_once() -> None:
    # Berlin, 2024-10-27: 03:00 CEST goes back to 02:00 CET; 02:30 happens at 00:30Z and
    # again at 01:30Z. It runs once, at its first occurrence.
    assert nexts("30 2 * * *", utc(2024, 10, 26, 12), 2, BERLIN) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 28, 1, 30),  # 02:30 CET on the 28th
    ]
    # Hourly: 02:00 CEST (00:00Z) runs, the repeated 02:00 CET (01:00Z) does not.
    assert nexts("0 * * * *", utc(2024, 10, 26, 23, 30), 3, BERLIN) == [
        utc(2024, 10, 27, 0, 0),
        utc(2024, 10, 27, 2, 0),  # 03:00 CET
        utc(2024, 10, 27, 3, 0),
    ]
    # From inside the repeated hour (02:10 CET, second pass): its wall times already ran.
    assert nexts("*/5 * * * *", utc(2024, 10, 27, 1, 10), 1, BERLIN) == [utc(2024, 10, 27, 2)]
    latest = Schedule.parse("*/5 * * * *", BERLIN).latest(
        utc(2024, 10, 26, 12), utc(2024, 10, 27, 1, 10)
    )
    assert latest == utc(2024, 10, 27, 0, 55)  # 02:55 CEST, first pass


def test_dst_us_spring_forward() -> None:
    # New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT; 02:15 does not exist.
    assert nexts("15 2 * * *", utc(2024, 3, 9, 12), 2, "America/New_York") == [
        utc(2024, 3, 11, 6, 15),  # 02:15 EDT
        utc(2024, 3, 12, 6, 15),
    ]


# --- missed runs (Kubernetes CronJob's rules) ------------------------------------------------


def test_nothing_due_until_the_next_time() -> None:
    every_minute = Schedule.parse("* * * * *")
    run = due(every_minute, utc(2024, 3, 1, 10, 0), utc(2024, 3, 1, 10, 0, 59))
    assert run.time is None and run.unmet == 0 and not run.startable
    assert run.next_time == utc(2024, 3, 1, 10, 1)


def test_only_the_most_recent_missed_run_starts() -> None:
    every_minute = Schedule.parse("* * * * *")
    run = due(every_minute, utc(2024, 3, 1, 10, 0), utc(2024, 3, 1, 10, 5, 30))
    assert run.time == utc(2024, 3, 1, 10, 5)
    assert run.startable
    assert run.unmet == 5 and run.skipped == 4
    assert run.next_time == utc(2024, 3, 1, 10, 6)
    assert not run.too_many_missed


def test_starting_deadline() -> None:
    every_minute = Schedule.parse("* * * * *")
    last, now = utc(2024, 3, 1, 10, 0), utc(2024, 3, 1, 10, 5, 30)
    # 30 s late, deadline 60 s: starts; only the times within the deadline are counted.
    run = due(every_minute, last, now, starting_deadline=60)
    assert run.time == utc(2024, 3, 1, 10, 5) and run.startable and run.unmet == 1
    # Deadline 20 s: too late; the run is reported, not started.
    run = due(every_minute, last, now, starting_deadline=20)
    assert run.time == utc(2024, 3, 1, 10, 5) and not run.startable and run.unmet == 0
    # Exactly at the deadline still starts.
    run = due(every_minute, last, utc(2024, 3, 1, 10, 5, 20), starting_deadline=20)
    assert run.startable


def test_missed_runs_after_a_long_outage() -> None:
    every_second = Schedule.parse("@every 1s")
    now = utc(2024, 3, 1, 12, 0, 0) + timedelta(milliseconds=500)
    started = time.monotonic()
    run = due(every_second, now - timedelta(days=3), now)
    assert time.monotonic() - started < 1.0  # counting stops at the cap
    assert run.time == utc(2024, 3, 1, 12, 0, 0) and run.startable
    assert run.unmet == TOO_MANY_MISSED + 1 and run.too_many_missed
    # With a deadline, only the times within it count: not too many.
    run = due(every_second, now - timedelta(days=3), now, starting_deadline=30)
    assert run.unmet == 30 and not run.too_many_missed and run.startable
    # A sparse cron after a year: the latest time is found without walking every minute.
    monthly_minutes = Schedule.parse("* * 1 * *")
    started = time.monotonic()
    run = due(monthly_minutes, utc(2023, 3, 1), utc(2024, 3, 20, 8, 0))
    assert time.monotonic() - started < 2.0
    assert run.time == utc(2024, 3, 1, 23, 59) and run.too_many_missed


def test_latest_is_none_when_nothing_in_range() -> None:
    daily = Schedule.parse("@daily")
    assert daily.latest(utc(2024, 3, 1, 0, 0), utc(2024, 3, 1, 23, 59)) is None
    assert daily.latest(utc(2024, 3, 1, 0, 0), utc(2024, 3, 2, 0, 0)) == utc(2024, 3, 2)
    assert daily.latest(utc(2024, 3, 2), utc(2024, 3, 1)) is None


# --- time windows ----------------------------------------------------------------------------


def test_office_hours_window_in_a_time_zone() -> None:
    office = [Window.parse(["Mon", "Tue", "Wed", "Thu", "Fri"], "09:00", "17:00")]
    tz = zone(BERLIN)
    # 2024-03-04 is a Monday; Berlin is UTC+1 (CET).
    assert in_windows(utc(2024, 3, 4, 8, 0), office, tz)  # 09:00: the start is inside
    assert in_windows(utc(2024, 3, 4, 15, 59), office, tz)  # 16:59
    assert not in_windows(utc(2024, 3, 4, 16, 0), office, tz)  # 17:00: the end is outside
    assert not in_windows(utc(2024, 3, 4, 7, 59), office, tz)  # 08:59
    assert not in_windows(utc(2024, 3, 2, 10, 0), office, tz)  # Saturday
    # In summer (CEST, UTC+2) the same wall clock is an hour earlier in UTC.
    assert in_windows(utc(2024, 7, 1, 7, 0), office, tz)  # Monday 09:00 CEST
    assert not in_windows(utc(2024, 7, 1, 15, 0), office, tz)  # 17:00 CEST


def test_overnight_window_and_whole_days() -> None:
    night = [Window.parse(["Fri"], "22:00", "06:00")]
    assert in_windows(utc(2024, 3, 1, 23, 0), night)  # Friday 23:00
    assert in_windows(utc(2024, 3, 2, 5, 59), night)  # Saturday 05:59: Friday's night
    assert not in_windows(utc(2024, 3, 2, 6, 0), night)
    assert not in_windows(utc(2024, 3, 2, 23, 0), night)  # Saturday night is not listed
    assert not in_windows(utc(2024, 2, 29, 23, 0), night)  # Thursday
    weekend = [Window.parse(["sat", "SUN"], "00:00", "24:00")]
    assert in_windows(utc(2024, 3, 3, 23, 59), weekend)
    assert not in_windows(utc(2024, 3, 4, 0, 0), weekend)
    every_day = [Window.parse([], "12:00", "13:00")]
    assert in_windows(utc(2024, 3, 6, 12, 30), every_day)
    assert in_windows(utc(2024, 3, 6, 3, 0), [])  # no windows: always


@pytest.mark.parametrize(
    ("days", "start", "end", "fragment"),
    [
        (["Funday"], "09:00", "17:00", "unknown day"),
        ([], "9:00", "17:00", "not a time of day"),
        ([], "25:00", "26:00", "not a time of day"),
        ([], "24:00", "01:00", "cannot start at 24:00"),
    ],
)
def test_bad_windows(days: list[str], start: str, end: str, fragment: str) -> None:
    with pytest.raises(CronError, match=fragment):
        Window.parse(days, start, end)


# --- the FaultSchedule model -----------------------------------------------------------------

TEMPLATE = {"spec": {"targetRef": {"name": "lab"}, "command": "kill memcached service on one node"}}


def spec(**fields: Any) -> FaultScheduleSpec:
    return FaultScheduleSpec.model_validate(
        {"schedule": "@every 5s", "template": TEMPLATE, **fields}
    )


def test_spec_defaults_are_cronjobs() -> None:
    s = spec()
    assert s.concurrency_policy == "Forbid"
    assert (s.successful_history_limit, s.failed_history_limit) == (3, 1)
    assert not s.suspend and s.starting_deadline_seconds is None and s.windows == []
    assert [d.value for d in Weekday] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"schedule": "61 * * * *"}, "minute: 61"),
        ({"timeZone": "Nowhere/Special"}, "unknown time zone"),
        ({"concurrencyPolicy": "Sometimes"}, "concurrencyPolicy"),
        ({"startingDeadlineSeconds": 0}, "startingDeadlineSeconds"),
        ({"windows": [{"days": ["Mon"], "start": "9", "end": "17:00"}]}, "start"),
        ({"template": {"spec": {"targetRef": {"name": "lab"}}}}, "exactly one of"),
    ],
)
def test_spec_refuses(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        spec(**fields)
    assert fragment in str(err.value)


def test_spec_windows_and_zone() -> None:
    s = spec(
        schedule="0 9 * * MON-FRI",
        timeZone=BERLIN,
        windows=[{"days": ["Mon", "Fri"], "start": "08:00", "end": "10:00"}],
    )
    assert s.cron().next_after(utc(2024, 3, 1, 10)) == utc(2024, 3, 4, 8)
    assert s.time_windows() == [Window(days=frozenset({0, 4}), start=480, end=600)]


# --- pure pieces of the reconcile loop -------------------------------------------------------


def child(name: str, phase: str | None, minute: int, deleting: bool = False) -> Child:
    return Child(name, phase, utc(2024, 3, 1, 12, minute), None, deleting)


def test_history_limits_prune_the_oldest_finished() -> None:
    children = [
        child("s-1", "Completed", 1),
        child("s-2", "Completed", 2),
        child("s-3", "Failed", 3),
        child("s-4", "Completed", 4),
        child("s-5", "Aborted", 5),
        child("s-6", "Active", 6),
        child("s-7", "Completed", 0, deleting=True),
    ]
    assert [c.name for c in to_prune(children, 2, 1)] == ["s-1", "s-3"]
    assert [c.name for c in to_prune(children, 0, 0)] == ["s-1", "s-2", "s-4", "s-3", "s-5"]
    assert to_prune(children, 5, 5) == []


def test_child_manifest_is_owned_labelled_and_annotated() -> None:
    schedule = {
        "metadata": {"name": "chaos", "namespace": "ns", "uid": "u-1"},
        "spec": {
            "schedule": "@every 5s",
            "template": {"metadata": {"labels": {"team": "a"}}, **TEMPLATE},
        },
    }
    s = FaultScheduleSpec.model_validate(schedule["spec"])
    t = utc(2024, 3, 1, 12, 0, 5)
    body = child_manifest(schedule, "chaos-1709294405", t, s)
    meta = body["metadata"]
    assert meta["labels"] == {"team": "a", "faultline.dev/schedule": "chaos"}
    assert meta["annotations"] == {"faultline.dev/scheduled-at": "2024-03-01T12:00:05Z"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "faultline.dev/v1alpha1",
            "kind": "FaultSchedule",
            "name": "chaos",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert body["spec"] == TEMPLATE["spec"]
    assert wake_targets(body, "DELETED") == ["u-1"]
    assert wake_targets({**body, "status": {"phase": "Completed"}}, "MODIFIED") == ["u-1"]
    assert wake_targets({**body, "status": {"phase": "Active"}}, "MODIFIED") == []


def test_status_patch_removes_cleared_fields() -> None:
    status = FaultScheduleStatus(last_schedule_time=utc(2024, 3, 1, 12), pending_child=None)
    body = status_body(status)
    assert body["lastScheduleTime"] == "2024-03-01T12:00:00Z"
    assert body["pendingChild"] is None and body["activeCount"] == 0
    assert spec_unseen({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}})
    assert not spec_unseen({"metadata": {"generation": 2}, "status": {"observedGeneration": 2}})


# --- the reconcile loop against an in-memory API ---------------------------------------------


class FakeKube:
    """The few calls ScheduleDriver makes, on dicts; `fail_create` refuses creations."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.rv = 0
        self.fail_create: int | None = None  # an HTTP status to answer creations with
        self.deleted: list[str] = []

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def add(self, plural: str, obj: dict[str, Any], created: datetime) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta["creationTimestamp"] = created.isoformat()
        self._bump(obj)
        self.objects[(plural, meta["name"])] = obj
        return obj

    async def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        if (plural, name) not in self.objects:
            raise KubeError(404, "not found", "NotFound")
        return copy.deepcopy(self.objects[(plural, name)])

    async def list(self, namespace: str, plural: str, label_selector: str = "") -> list[Any]:
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(o)
            for (p, _), o in self.objects.items()
            if p == plural and (o["metadata"].get("labels") or {}).get(key) == value
        ]

    async def create(self, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.fail_create is not None:
            raise KubeError(self.fail_create, "refused")
        if (plural, body["metadata"]["name"]) in self.objects:
            raise KubeError(409, "already exists", "AlreadyExists")
        return self.add(plural, body, NOW[0])

    async def delete(self, namespace: str, plural: str, name: str) -> bool:
        self.deleted.append(name)
        return self.objects.pop((plural, name), None) is not None

    async def patch_status(
        self,
        namespace: str,
        plural: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        obj = self.objects[(plural, name)]
        if resource_version and resource_version != obj["metadata"]["resourceVersion"]:
            raise KubeError(409, "the object has been modified", "Conflict")
        merged = dict(obj.get("status") or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        obj["status"] = merged
        self._bump(obj)
        return copy.deepcopy(obj)

    def child_names(self) -> list[str]:
        return sorted(name for plural, name in self.objects if plural == "faultinjections")

    def status(self, name: str = "s") -> dict[str, Any]:
        return dict(self.objects[("faultschedules", name)].get("status") or {})


T0 = utc(2024, 3, 4, 12, 0, 2)  # a Monday; @every 5s runs at :05, :10, ...
NOW = [T0]


def driver(
    kube: FakeKube,
    events: list[tuple[str, str]] | None = None,
    switches: KillSwitches | None = None,
) -> ScheduleDriver:
    sink = events if events is not None else []
    return ScheduleDriver(
        kube,  # type: ignore[arg-type]
        "default",
        "s",
        "uid-s",
        lambda type_, reason, message: sink.append((reason, message)),
        Wakeups(),
        clock=lambda: NOW[0],
        switches=switches,
    )


def make(**fields: Any) -> FakeKube:
    kube = FakeKube()
    spec_ = {"schedule": "@every 5s", "template": TEMPLATE, **fields}
    kube.add("faultschedules", {"metadata": {"name": "s"}, "spec": spec_}, T0)
    NOW[0] = T0
    return kube


def at(seconds: float) -> None:
    NOW[0] = T0 + timedelta(seconds=seconds)


def run(step: Any) -> Any:
    return asyncio.run(step)


def name_at(seconds: int) -> str:
    return f"s-{int(T0.timestamp()) + seconds}"


def test_loop_creates_each_run_once_and_sleeps_until_the_next() -> None:
    kube = make()
    wait = run(driver(kube).step())
    assert kube.child_names() == [] and 2.9 < wait < 3.2  # until :05
    at(3.05)
    assert run(driver(kube).step()) == 0.0  # created; look again at once
    assert kube.child_names() == [name_at(3)]
    wait = run(driver(kube).step())  # the same moment again: nothing new
    assert kube.child_names() == [name_at(3)] and 4.9 < wait < 5.1
    st = kube.status()
    assert st["lastScheduleTime"] == "2024-03-04T12:00:05Z"
    assert st["active"] == [name_at(3)] and st["activeCount"] == 1
    assert "pendingChild" not in st
    child = kube.objects[("faultinjections", name_at(3))]
    assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-s"


def test_a_claimed_run_is_created_by_the_next_operator() -> None:
    kube = make()
    at(3.05)
    kube.fail_create = 503  # the operator dies between the claim and the creation
    with pytest.raises(KubeError):
        run(driver(kube).step())
    assert kube.status()["pendingChild"] == name_at(3) and kube.child_names() == []
    kube.fail_create = None
    at(4.5)  # a new operator, before the next run is due
    run(driver(kube).step())
    run(driver(kube).step())
    assert kube.child_names() == [name_at(3)]
    assert "pendingChild" not in kube.status()


def test_a_claimed_run_yields_to_a_newer_one() -> None:
    kube, events = make(), []  # type: ignore[var-annotated]
    at(3.05)
    kube.fail_create = 503
    with pytest.raises(KubeError):
        run(driver(kube).step())
    kube.fail_create = None
    at(13.05)  # back after :10 was due: only the latest run starts
    run(driver(kube, events).step())
    run(driver(kube, events).step())
    assert kube.child_names() == [name_at(13)]
    assert kube.status()["lastSkipped"]["reason"] == "MissedSchedule"
    assert [r for r, _ in events].count("MissedSchedule") == 1


def test_already_exists_is_success_unless_someone_else_owns_it() -> None:
    kube = make(concurrencyPolicy="Allow")
    at(3.05)
    mine = child_manifest(
        kube.objects[("faultschedules", "s")], name_at(3), utc(2024, 3, 4, 12, 0, 5), spec()
    )
    kube.add("faultinjections", mine, T0)
    run(driver(kube).step())
    assert kube.child_names() == [name_at(3)] and kube.status()["active"] == [name_at(3)]
    # A FaultInjection of the next run's name that this schedule does not own.
    foreign = {"metadata": {"name": name_at(8), "labels": {"faultline.dev/schedule": "s"}}}
    kube.add("faultinjections", foreign, T0)
    at(8.05)
    events: list[tuple[str, str]] = []
    run(driver(kube, events).step())
    assert kube.status()["lastSkipped"]["reason"] == "NameTaken"
    assert ("NameTaken" in {r for r, _ in events}) and kube.status()["active"] == [name_at(3)]


def test_the_claim_is_conditional_on_the_version_read() -> None:
    kube = make()
    at(3.05)
    d = driver(kube)
    real_get = kube.get

    async def stale_get(namespace: str, plural: str, name: str) -> dict[str, Any]:
        obj = await real_get(namespace, plural, name)
        if plural == "faultschedules":
            kube._bump(kube.objects[(plural, name)])  # someone writes right after our read
        return obj

    kube.get = stale_get  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        run(d.step())
    assert kube.child_names() == [] and "lastScheduleTime" not in kube.status()


def test_forbid_waits_then_starts_within_the_deadline() -> None:
    kube, events = make(startingDeadlineSeconds=3), []  # type: ignore[var-annotated]
    at(3.05)
    run(driver(kube).step())
    first = name_at(3)
    at(8.05)  # :10 is due, the first run is still active
    assert run(driver(kube, events).step()) <= 5.0
    run(driver(kube, events).step())
    assert kube.child_names() == [first]
    assert [r for r, _ in events] == ["AlreadyActive"]  # once per run, not per look
    kube.objects[("faultinjections", first)]["status"] = {"phase": "Completed"}
    at(10.0)  # finished 2 s late: within the 3 s deadline, :10 starts now
    run(driver(kube, events).step())
    assert kube.child_names() == [first, name_at(8)]
    assert "lastSkipped" not in kube.status()


def test_forbid_drops_a_run_past_its_deadline() -> None:
    kube = make(startingDeadlineSeconds=1)
    at(3.05)
    run(driver(kube).step())
    at(8.05)
    run(driver(kube).step())
    kube.objects[("faultinjections", name_at(3))]["status"] = {"phase": "Completed"}
    at(10.5)
    run(driver(kube).step())
    assert kube.child_names() == [name_at(3)]
    assert kube.status()["lastSkipped"]["reason"] == "MissedSchedule"
    at(13.05)
    run(driver(kube).step())
    assert kube.child_names() == [name_at(3), name_at(13)]


def test_a_kill_switch_holds_due_runs_until_lifted() -> None:
    """The operator's --kill-switch (the one switch that needs no ConfigMap read)."""
    kube, events = make(startingDeadlineSeconds=3), []  # type: ignore[var-annotated]
    settings = Settings(flag=True)
    switches = KillSwitches(kube, settings)  # type: ignore[arg-type]
    at(3.05)
    assert run(driver(kube, events, switches).step()) <= BLOCKED_RECHECK
    run(driver(kube, events, switches).step())
    assert kube.child_names() == []
    st = kube.status()
    assert "lastScheduleTime" not in st
    assert st["lastSkipped"]["reason"] == "KillSwitch"
    assert "--kill-switch" in st["lastSkipped"]["message"]
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KillSwitch")
    assert [r for r, _ in events] == ["KillSwitch"]  # once per run, not per look
    settings.flag = False  # lifted within the run's deadline: it starts late
    switches.observe("default", None)  # kopf's listing: no ConfigMap switch either
    at(5.0)
    run(driver(kube, events, switches).step())
    assert kube.child_names() == [name_at(3)]
    ready = next(c for c in kube.status()["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Scheduling"


def test_a_paused_target_holds_due_runs() -> None:
    kube = make()
    paused = {"lab"}
    held = driver(kube)
    held.target_paused = lambda namespace, name: name in paused
    at(3.05)
    run(held.step())
    assert kube.child_names() == []
    st = kube.status()
    assert st["lastSkipped"]["reason"] == "TargetPaused"
    assert "FaultTarget lab: safety.paused" in st["lastSkipped"]["message"]
    paused.clear()
    run(held.step())
    assert kube.child_names() == [name_at(3)]


def test_replace_deletes_the_active_child_first() -> None:
    kube = make(concurrencyPolicy="Replace")
    at(3.05)
    run(driver(kube).step())
    at(8.05)
    run(driver(kube).step())
    assert kube.deleted == [name_at(3)] and kube.child_names() == [name_at(8)]


def test_history_suspend_windows_and_too_many_missed() -> None:
    kube = make(successfulHistoryLimit=1, concurrencyPolicy="Allow")
    for k in range(3):
        at(3.05 + 5 * k)
        run(driver(kube).step())
        kube.objects[("faultinjections", name_at(3 + 5 * k))]["status"] = {
            "phase": "Completed",
            "completedAt": (NOW[0] + timedelta(seconds=1)).isoformat(),
        }
    run(driver(kube).step())
    assert kube.child_names() == [name_at(13)]  # the older successful ones are pruned
    assert kube.status()["lastSuccessfulTime"].startswith("2024-03-04T12:00:16")
    # Suspended: nothing new, and Ready says why.
    kube.objects[("faultschedules", "s")]["spec"]["suspend"] = True
    at(30)
    run(driver(kube).step())
    assert kube.child_names() == [name_at(13)]
    ready = next(c for c in kube.status()["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")
    # Outside its window (weekends only; T0 is a Monday): skipped and recorded.
    spec_ = kube.objects[("faultschedules", "s")]["spec"]
    spec_["suspend"] = False
    spec_["windows"] = [{"days": ["Sat", "Sun"], "start": "00:00", "end": "24:00"}]
    run(driver(kube).step())
    assert kube.child_names() == [name_at(13)]
    assert kube.status()["lastSkipped"]["reason"] == "OutsideWindow"
    # Far behind (over 100 runs missed): the latest starts, and a condition says so.
    spec_["windows"] = []
    at(3600)
    run(driver(kube).step())
    assert name_at(3598) in kube.child_names()
    missed = next(c for c in kube.status()["conditions"] if c["type"] == "TooManyMissed")
    assert missed["status"] == "True"


def test_an_invalid_spec_is_a_condition_not_a_crash() -> None:
    kube = make()
    kube.objects[("faultschedules", "s")]["spec"]["schedule"] = "every tuesday"
    events: list[tuple[str, str]] = []
    run(driver(kube, events).step())
    run(driver(kube, events).step())
    ready = next(c for c in kube.status()["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "schedule" in ready["message"] and [r for r, _ in events] == ["InvalidSpec"]

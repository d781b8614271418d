"""FaultSchedule: a cron schedule that creates FaultInjections from a template.

The schedule's children are ordinary FaultInjections, owned by it (ownerReferences,
controller: true), labelled `faultline.dev/schedule=<name>` and named
`<schedule>-<run number>` (Unix minutes of the scheduled time for cron fields, Unix seconds
for `@every`), so one scheduled time can only ever have one child.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from faultline.models.base import Model
from faultline.models.cron import CronError, Schedule, Window, zone
from faultline.models.resources import GROUP, Condition, FaultInjectionSpec

SCHEDULE_LABEL = f"{GROUP}/schedule"
SCHEDULED_AT_ANNOTATION = f"{GROUP}/scheduled-at"
#: Like CronJob's 52: the name plus "-" and a run number must fit a 63-character label value.
MAX_SCHEDULE_NAME = 52


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    ALLOW = "Allow"
    REPLACE = "Replace"


class Weekday(StrEnum):
    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


_START = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_END = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


class TimeWindow(Model):
    """When runs may start, in the schedule's time zone. An end at or before the start
    spans midnight (22:00-06:00 starts on the days listed)."""

    days: list[Weekday] = Field(
        default_factory=list, description="Mon, Tue, Wed, Thu, Fri, Sat, Sun; empty: every day."
    )
    start: str = Field(pattern=_START, description="HH:MM, inclusive.")
    end: str = Field(pattern=_END, description="HH:MM, exclusive (24:00 is the end of the day).")

    def window(self) -> Window:
        return Window.parse([str(d) for d in self.days], self.start, self.end)

    @model_validator(mode="after")
    def _valid(self) -> TimeWindow:
        try:
            self.window()
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return self


class TemplateMetadata(Model):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class FaultInjectionTemplate(Model):
    metadata: TemplateMetadata | None = Field(
        default=None, description="Labels and annotations every child gets."
    )
    spec: FaultInjectionSpec


class FaultScheduleSpec(Model):
    schedule: str = Field(
        min_length=1,
        description=(
            'Cron: "*/10 9-17 * * MON-FRI", @hourly, @daily, @weekly, @monthly, @yearly, '
            "or an interval: @every 30s, @every 5m (counted from the Unix epoch)."
        ),
    )
    time_zone: str | None = Field(
        default=None, description="IANA time zone of the schedule and windows; default UTC."
    )
    template: FaultInjectionTemplate
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description=(
            "Forbid: no new run while a child is active; Allow: overlap; Replace: delete the "
            "active children (their faults are recovered) and start the new run."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="A run more than this late (operator down, Forbid) is not started.",
    )
    successful_history_limit: int = Field(
        default=3, ge=0, description="Completed children kept (the oldest are deleted)."
    )
    failed_history_limit: int = Field(
        default=1, ge=0, description="Failed or Aborted children kept (the oldest are deleted)."
    )
    suspend: bool = Field(default=False, description="No new runs; active children go on.")
    windows: list[TimeWindow] = Field(
        default_factory=list,
        description="When set, runs start only inside one of these windows; others are skipped.",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            Schedule.parse(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        try:
            zone(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    def cron(self) -> Schedule:
        return Schedule.parse(self.schedule, self.time_zone)

    def time_windows(self) -> list[Window]:
        return [w.window() for w in self.windows]


class SkippedRun(Model):
    scheduled_time: datetime
    reason: str
    message: str = ""


class FaultScheduleStatus(Model):
    last_schedule_time: datetime | None = Field(
        default=None,
        description="The last scheduled time taken; written before its child is created.",
    )
    last_successful_time: datetime | None = None
    next_schedule_time: datetime | None = None
    active: list[str] = Field(default_factory=list, description="Children not finished yet.")
    active_count: int = 0
    pending_child: str | None = Field(
        default=None,
        description="The child of lastScheduleTime until it is seen created (after a crash, "
        "a new operator creates it under the same name).",
    )
    last_skipped: SkippedRun | None = Field(
        default=None, description="The last scheduled time not started, and why."
    )
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


def child_name(schedule: str, cron: Schedule, scheduled: datetime) -> str:
    """The one name the run at `scheduled` can have."""
    return f"{schedule}-{cron.number(scheduled)}"

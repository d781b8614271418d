"""Driving one FaultSchedule: create its FaultInjections when they are due, never twice.

One loop per schedule (a kopf daemon). Every turn starts from what the API says — the
schedule's persisted status and its children, listed by label — never from memory, so a
restarted operator carries on where the killed one stopped. In-memory state only decides
*when* to look again (the next due time, or a wake-up when the spec or a child changes).

Why a scheduled time cannot get two children:

1. A child's name is a function of the scheduled time (`<schedule>-<run number>`), so two
   creations for one time collide: the second gets AlreadyExists, which counts as success.
2. The scheduled time is claimed in status (`lastScheduleTime`, plus `pendingChild`) before
   the child is created, with the resourceVersion the decision was made on (a concurrent
   writer makes the claim fail with 409 and the turn starts over). Only times after
   `lastScheduleTime` are ever considered again, so a run that finished and was pruned is
   not started anew.
3. `pendingChild` covers a crash between the claim and the creation: the next turn creates
   exactly that child (same name) unless a newer time is due or its deadline passed.

Missed runs follow Kubernetes CronJob: of the times missed since `lastScheduleTime`, only
the most recent starts, and only within `startingDeadlineSeconds` when set; a run blocked by
`concurrencyPolicy: Forbid` stays due until its deadline (or the next time) passes. Runs
outside `windows` are skipped and recorded in status.lastSkipped and an Event. While a kill
switch covers the schedule's namespace, or the template's FaultTarget is paused
(`safety.paused`), no child is created: the due run is recorded as skipped (reason
KillSwitch or TargetPaused) and, like a run blocked by Forbid, stays due until its deadline
or the next time, so set `startingDeadlineSeconds` to keep a late run from starting when
the switch is lifted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from faultline.models.cron import Schedule, due, in_windows
from faultline.models.errors import config_error_from_pydantic
from faultline.models.resources import API_VERSION, FINAL_PHASES, Condition, Phase
from faultline.models.schedule import (
    MAX_SCHEDULE_NAME,
    SCHEDULE_LABEL,
    SCHEDULED_AT_ANNOTATION,
    ConcurrencyPolicy,
    FaultScheduleSpec,
    FaultScheduleStatus,
    SkippedRun,
    child_name,
)
from faultline.reconcile.handle_kill_switch import KillSwitches
from faultline.reconcile.kube import Kube, KubeError

log = logging.getLogger(__name__)

PLURAL = "faultschedules"
CHILD_PLURAL = "faultinjections"
KIND = "FaultSchedule"

DONE = -1.0
#: The longest sleep: a turn this often even if no wake-up arrives (a missed watch event).
MAX_SLEEP = 60.0
#: How often a run blocked by active children is looked at (child events wake us sooner).
BLOCKED_RECHECK = 5.0
RETRY_SECONDS = 5.0
#: After a 409 on the claim: read again, soon (another writer changed the schedule).
CONFLICT_RETRY = 0.1
#: Wake this long after a due time, so the clock has surely passed it.
_DUE_MARGIN = 0.05

#: (event type, reason, message) -> posts a Kubernetes Event on the schedule.
EventSink = Callable[[str, str, str], None]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Stopped(Protocol):
    """What the loop needs of kopf's DaemonStopped flag."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Any: ...


class Wakeups:
    """One asyncio.Event per schedule uid: set when its spec or one of its children changed,
    so the loop looks again before its sleep ends. Only a hint: decisions come from the API."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, uid: str) -> asyncio.Event:
        return self._events.setdefault(uid, asyncio.Event())

    def wake(self, uid: str) -> None:
        event = self._events.get(uid)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        for event in self._events.values():
            event.set()

    def drop(self, uid: str) -> None:
        self._events.pop(uid, None)


# --- children --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    name: str
    phase: str | None
    scheduled: datetime
    completed_at: datetime | None
    deleting: bool

    @property
    def finished(self) -> bool:
        return self.phase in {p.value for p in FINAL_PHASES}

    @property
    def succeeded(self) -> bool:
        return self.phase == Phase.COMPLETED.value


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the FaultSchedule controlling `obj` (a FaultInjection), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == KIND:
            return str(ref.get("uid"))
    return None


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def parse_child(obj: Mapping[str, Any]) -> Child:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    scheduled = (
        _time((meta.get("annotations") or {}).get(SCHEDULED_AT_ANNOTATION))
        or _time(meta.get("creationTimestamp"))
        or utcnow()
    )
    return Child(
        name=str(meta.get("name")),
        phase=status.get("phase"),
        scheduled=scheduled,
        completed_at=_time(status.get("completedAt")),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def to_prune(children: list[Child], successful_limit: int, failed_limit: int) -> list[Child]:
    """Finished children beyond the history limits, oldest first (CronJob's rule)."""
    out: list[Child] = []
    for keep, group in (
        (successful_limit, [c for c in children if c.finished and c.succeeded]),
        (failed_limit, [c for c in children if c.finished and not c.succeeded]),
    ):
        live = sorted((c for c in group if not c.deleting), key=lambda c: (c.scheduled, c.name))
        out += live[: max(0, len(live) - keep)]
    return out


def child_manifest(
    schedule: Mapping[str, Any], name: str, scheduled: datetime, spec: FaultScheduleSpec
) -> dict[str, Any]:
    """The FaultInjection of one run: the template's spec as written, owned by the schedule."""
    meta = schedule["metadata"]
    template = (schedule.get("spec") or {}).get("template") or {}
    extra = spec.template.metadata
    labels = dict((extra.labels if extra else None) or {})
    labels[SCHEDULE_LABEL] = meta["name"]
    annotations = dict((extra.annotations if extra else None) or {})
    annotations[SCHEDULED_AT_ANNOTATION] = (
        scheduled.astimezone(UTC).isoformat().replace("+00:00", "Z")
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "FaultInjection",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": dict(template.get("spec") or {}),
    }


def set_condition(
    status: FaultScheduleStatus, type_: str, ok: bool, reason: str, message: str = ""
) -> None:
    value: Literal["True", "False"] = "True" if ok else "False"
    stamp = utcnow().replace(microsecond=0)
    conditions = [c.model_copy() for c in status.conditions]
    for cond in conditions:
        if cond.type == type_:
            if cond.status != value:
                cond.last_transition_time = stamp
            cond.status, cond.reason, cond.message = value, reason, message
            break
    else:
        conditions.append(
            Condition(
                type=type_, status=value, reason=reason, message=message, last_transition_time=stamp
            )
        )
    status.conditions = conditions


def condition_is(status: FaultScheduleStatus, type_: str, value: str) -> bool:
    return any(c.type == type_ and c.status == value for c in status.conditions)


def status_body(status: FaultScheduleStatus) -> dict[str, Any]:
    """The whole status as a merge patch: fields that are None are removed."""
    body: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key, field in FaultScheduleStatus.model_fields.items():
        if getattr(status, key) is None:
            body[field.alias or key] = None
    return body


class Conflict(Exception):
    """The schedule changed between reading it and claiming a run: start the turn over."""


# --- the loop --------------------------------------------------------------------------------


class ScheduleDriver:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        uid: str,
        event: EventSink,
        wakeups: Wakeups,
        clock: Clock = utcnow,
        switches: KillSwitches | None = None,
        target_paused: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.kube = kube
        self.switches = switches
        self.target_paused = target_paused
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.event = event
        self.wakeups = wakeups
        self.clock = clock

    async def run(self, stopped: Stopped) -> None:
        wake = self.wakeups.event(self.uid)
        try:
            while not stopped:
                wake.clear()
                try:
                    wait = await self.step()
                except Conflict:
                    wait = CONFLICT_RETRY
                except (KubeError, OSError, TimeoutError) as exc:
                    log.warning("FaultSchedule %s/%s: %s", self.namespace, self.name, exc)
                    wait = RETRY_SECONDS
                except Exception:  # a bug must not end the schedule: log it, try again later
                    log.exception("FaultSchedule %s/%s: turn failed", self.namespace, self.name)
                    wait = RETRY_SECONDS
                if wait == DONE:
                    return
                if wait > 0:
                    await _pause(stopped, wake, min(wait, MAX_SLEEP))
        finally:
            self.wakeups.drop(self.uid)

    # --- one turn ------------------------------------------------------------------------

    async def step(self) -> float:
        """Look at the schedule and its children, act, and say how long to sleep (DONE: the
        schedule is gone or going)."""
        try:
            obj = await self.kube.get(self.namespace, PLURAL, self.name)
        except KubeError as exc:
            if exc.status == 404:
                return DONE
            raise
        meta = obj.get("metadata") or {}
        if meta.get("uid") != self.uid or meta.get("deletionTimestamp"):
            return DONE  # deleted (or replaced by a new object of the same name)
        try:
            old = FaultScheduleStatus.model_validate(obj.get("status") or {})
        except ValidationError:
            old = FaultScheduleStatus()  # unreadable status: start from the creation time
        status = old.model_copy(deep=True)
        status.observed_generation = meta.get("generation")
        try:
            spec = FaultScheduleSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            message = str(config_error_from_pydantic(exc.errors(), prefix="spec"))
            return await self.invalid(old, status, "InvalidSpec", message)
        if len(self.name) > MAX_SCHEDULE_NAME:
            message = (
                f"the name has {len(self.name)} characters; at most {MAX_SCHEDULE_NAME} "
                "(child names and the schedule label must fit 63)"
            )
            return await self.invalid(old, status, "NameTooLong", message)
        cron = spec.cron()
        children = await self.children()
        await self.bookkeep(status, children, spec)

        if status.pending_child is not None:
            created = await self.finish_pending(obj, status, spec, cron, children)
            if created:
                await self.save(old, status)
                return 0.0

        now = self.clock()
        if spec.suspend:
            status.next_schedule_time = None
            set_condition(status, "Ready", True, "Suspended", "no new runs while suspended")
            await self.save(old, status)
            return MAX_SLEEP
        set_condition(status, "Ready", True, "Scheduling")
        last = status.last_schedule_time or _time(meta.get("creationTimestamp")) or now
        run = due(cron, last, now, spec.starting_deadline_seconds)
        status.next_schedule_time = run.next_time
        until_next = max(0.0, (run.next_time - now).total_seconds()) + _DUE_MARGIN
        self.too_many_missed(status, run.unmet, run.too_many_missed)
        if run.time is None:
            await self.save(old, status)
            return until_next
        if not run.startable:
            late = (now - run.time).total_seconds()
            self.skip(
                status,
                run.time,
                "MissedSchedule",
                f"run of {_iso(run.time)} not started: {late:.0f}s late, more than "
                f"startingDeadlineSeconds ({spec.starting_deadline_seconds})",
            )
            await self.save(old, status)
            return until_next
        windows = spec.time_windows()
        if windows and not (
            in_windows(run.time, windows, cron.tz) and in_windows(now, windows, cron.tz)
        ):
            self.skip(status, run.time, "OutsideWindow", f"run of {_iso(run.time)} skipped")
            await self.save(old, status)
            return until_next
        held = await self.held(spec)
        if held is not None:
            reason, message = held
            set_condition(status, "Ready", True, reason, message)
            self.skip(status, run.time, reason, f"run of {_iso(run.time)} waits: {message}")
            await self.save(old, status)
            return min(until_next, BLOCKED_RECHECK)
        active = [c for c in children if not c.finished]
        if spec.concurrency_policy == ConcurrencyPolicy.FORBID and active:
            names = ", ".join(c.name for c in active)
            self.skip(
                status,
                run.time,
                "AlreadyActive",
                f"run of {_iso(run.time)} waits: {names} still active (concurrencyPolicy Forbid)",
            )
            await self.save(old, status)
            return min(until_next, BLOCKED_RECHECK)

        # Claim the run in status first: from here on it is this time's child or nothing.
        name = child_name(self.name, cron, run.time)
        status.last_schedule_time = run.time
        status.pending_child = name
        if status.last_skipped is not None and status.last_skipped.scheduled_time == run.time:
            status.last_skipped = None  # it starts after all (Forbid let it through)
        await self.save(old, status, resource_version=str(meta.get("resourceVersion") or ""))
        if run.skipped:
            self.event(
                "Normal",
                "MissedRuns",
                f"{run.skipped} earlier run(s) missed; starting only the latest ({_iso(run.time)})",
            )
        claimed = status.model_copy(deep=True)
        await self.start(obj, status, spec, name, run.time, children)
        await self.save(claimed, status)
        return 0.0

    # --- pieces --------------------------------------------------------------------------

    async def held(self, spec: FaultScheduleSpec) -> tuple[str, str] | None:
        """(reason, message) when a brake holds new runs: a kill switch over the namespace,
        or the template's FaultTarget paused (its children would only wait in Pending)."""
        engaged = await self.switches.engaged(self.namespace) if self.switches else None
        if engaged is not None:
            return "KillSwitch", engaged.message
        target = spec.template.spec.target_ref.name
        if self.target_paused is not None and self.target_paused(self.namespace, target):
            return "TargetPaused", f"FaultTarget {target}: safety.paused"
        return None

    async def children(self) -> list[Child]:
        objs = await self.kube.list(self.namespace, CHILD_PLURAL, f"{SCHEDULE_LABEL}={self.name}")
        return [parse_child(o) for o in objs if controller_uid(o) == self.uid]

    async def bookkeep(
        self, status: FaultScheduleStatus, children: list[Child], spec: FaultScheduleSpec
    ) -> None:
        """active, lastSuccessfulTime, and history pruning."""
        active = sorted((c for c in children if not c.finished), key=lambda c: c.scheduled)
        status.active = [c.name for c in active]
        status.active_count = len(active)
        done = [c.completed_at for c in children if c.succeeded and c.completed_at]
        if done:
            latest = max(done)
            if status.last_successful_time is None or latest > status.last_successful_time:
                status.last_successful_time = latest
        for child in to_prune(children, spec.successful_history_limit, spec.failed_history_limit):
            if await self.kube.delete(self.namespace, CHILD_PLURAL, child.name):
                self.event("Normal", "SuccessfulDelete", f"deleted finished {child.name}")

    async def finish_pending(
        self,
        obj: Mapping[str, Any],
        status: FaultScheduleStatus,
        spec: FaultScheduleSpec,
        cron: Schedule,
        children: list[Child],
    ) -> bool:
        """A run claimed by an earlier turn (maybe an operator that died before creating its
        child). True when this turn created it."""
        name = status.pending_child
        scheduled = status.last_schedule_time
        if name is None:
            return False
        if scheduled is None or any(c.name == name for c in children):
            status.pending_child = None  # it was created; nothing to finish
            return False
        now = self.clock()
        deadline = spec.starting_deadline_seconds
        newer = cron.latest(scheduled, now)
        if newer is not None or (
            deadline is not None and (now - scheduled).total_seconds() > deadline
        ):
            status.pending_child = None
            why = f"{_iso(newer)} is due now" if newer else "past startingDeadlineSeconds"
            self.skip(status, scheduled, "MissedSchedule", f"claimed run {name} not created: {why}")
            return False
        await self.start(obj, status, spec, name, scheduled, children)
        return True

    async def start(
        self,
        obj: Mapping[str, Any],
        status: FaultScheduleStatus,
        spec: FaultScheduleSpec,
        name: str,
        scheduled: datetime,
        children: list[Child],
    ) -> None:
        """Replace, then create the claimed child (AlreadyExists is success)."""
        if spec.concurrency_policy == ConcurrencyPolicy.REPLACE:
            for child in children:
                if child.finished or child.deleting or child.name == name:
                    continue
                if await self.kube.delete(self.namespace, CHILD_PLURAL, child.name):
                    self.event("Normal", "SuccessfulDelete", f"replaced {child.name} (recovering)")
        manifest = child_manifest(obj, name, scheduled, spec)
        try:
            await self.kube.create(self.namespace, CHILD_PLURAL, manifest)
            self.event("Normal", "SuccessfulCreate", f"created {name} for {_iso(scheduled)}")
        except KubeError as exc:
            if exc.status in (400, 403, 404, 422):  # refused: retrying this run cannot help
                self.skip(status, scheduled, "CreateFailed", f"{name}: {exc}")
                status.pending_child = None
                return
            if exc.status != 409:
                raise  # the claim stays pending: the next turn tries again
            existing = await self.kube.get(self.namespace, CHILD_PLURAL, name)
            if controller_uid(existing) != self.uid:
                self.skip(
                    status,
                    scheduled,
                    "NameTaken",
                    f"{name} exists and does not belong to this schedule; run not started",
                )
                status.pending_child = None
                return
        status.pending_child = None
        if name not in status.active:
            status.active = [*status.active, name]
            status.active_count = len(status.active)

    def skip(self, status: FaultScheduleStatus, scheduled: datetime, reason: str, msg: str) -> None:
        """Record a run not started (status and one Event per scheduled time and reason)."""
        last = status.last_skipped
        if last is not None and (last.scheduled_time, last.reason) == (scheduled, reason):
            return
        status.last_skipped = SkippedRun(scheduled_time=scheduled, reason=reason, message=msg)
        self.event("Warning" if reason != "AlreadyActive" else "Normal", reason, msg)

    def too_many_missed(self, status: FaultScheduleStatus, unmet: int, too_many: bool) -> None:
        if too_many:
            if not condition_is(status, "TooManyMissed", "True"):
                message = (
                    f"more than {unmet - 1} runs missed; only the latest starts. Set or lower "
                    "startingDeadlineSeconds, or check the clock"
                )
                set_condition(status, "TooManyMissed", True, "TooManyMissedTimes", message)
                self.event("Warning", "TooManyMissedTimes", message)
        elif condition_is(status, "TooManyMissed", "True"):
            set_condition(status, "TooManyMissed", False, "OnTime")

    async def invalid(
        self, old: FaultScheduleStatus, status: FaultScheduleStatus, reason: str, message: str
    ) -> float:
        was = next((c for c in old.conditions if c.type == "Ready"), None)
        set_condition(status, "Ready", False, reason, message)
        status.next_schedule_time = None
        if was is None or (was.status, was.reason, was.message) != ("False", reason, message):
            self.event("Warning", reason, message)
        await self.save(old, status)
        return MAX_SLEEP  # a spec change wakes us

    async def save(
        self,
        old: FaultScheduleStatus,
        new: FaultScheduleStatus,
        resource_version: str | None = None,
    ) -> None:
        if new == old and not resource_version:
            return
        try:
            await self.kube.patch_status(
                self.namespace,
                PLURAL,
                self.name,
                status_body(new),
                resource_version=resource_version,
            )
        except KubeError as exc:
            if exc.status == 409:
                raise Conflict from exc
            raise


def _iso(t: datetime | None) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t else "-"


async def _pause(stopped: Stopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until `seconds` pass, the daemon is stopped, or someone wakes us."""

    async def stop() -> None:
        await stopped.wait(seconds)

    tasks = {asyncio.ensure_future(stop()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def wake_targets(body: Mapping[str, Any], event_type: str | None) -> list[str]:
    """For a FaultInjection watch event: the schedules to wake (a child finished or went)."""
    uid = controller_uid(body)
    if uid is None:
        return []
    phase = (body.get("status") or {}).get("phase")
    if event_type == "DELETED" or phase in {p.value for p in FINAL_PHASES}:
        return [uid]
    return []


def spec_unseen(body: Mapping[str, Any]) -> bool:
    """For a FaultSchedule watch event: a spec its loop has not acted on yet."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return bool(meta.get("deletionTimestamp")) or meta.get("generation") != status.get(
        "observedGeneration"
    )

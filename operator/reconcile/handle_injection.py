"""Driving one FaultInjection to its desired phase; resumable at any point after a crash.

Phases: Pending -> Injecting -> Active -> Recovering -> Completed (or Failed / Aborted).
Every step starts from what status says, so a restarted operator continues where the
killed one stopped: records that may have been applied are recovered (and, while the
injection should still be active, applied again); expiry comes from the persisted
expiresAt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from faultline.engine import safety
from faultline.engine.engine import Engine
from faultline.engine.safety import SafetyError
from faultline.engine.selection import select
from faultline.models.errors import FaultlineError, config_error_from_pydantic
from faultline.models.records import Record, RecordPhase
from faultline.models.resources import (
    FINAL_PHASES,
    PAUSED_ANNOTATION,
    FaultInjectionSpec,
    FaultInjectionStatus,
    OverlapPolicy,
    Phase,
    Rollback,
)
from faultline.reconcile import metrics
from faultline.reconcile.handle_kill_switch import KillSwitches, KillSwitchUnknownError
from faultline.reconcile.kube import Kube
from faultline.reconcile.locks import LockKey, LockTable
from faultline.reconcile.plan import Plan, plan
from faultline.reconcile.status import StatusWriter, now
from faultline.reconcile.stop_conditions import StopWatch
from faultline.reconcile.targets import TargetNotReadyError, Targets

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0
DONE = -1.0
RECOVER_RETRY_SECONDS = 10.0

#: (event type, reason, message) -> posts a Kubernetes Event on the injection.
EventSink = Callable[[str, str, str], None]


class Stopped(Protocol):
    """What the driver needs of kopf's DaemonStopped flag."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


@dataclass
class Operator:
    """Shared by every injection the operator drives."""

    kube: Kube
    targets: Targets
    locks: LockTable
    switches: KillSwitches
    steps: dict[str, asyncio.Lock] = field(default_factory=dict)
    deleting: set[str] = field(default_factory=set)

    def step_lock(self, uid: str) -> asyncio.Lock:
        """Serialises an injection's steps with its deletion: finalize waits for the
        step in flight, and no step starts once deletion began."""
        return self.steps.setdefault(uid, asyncio.Lock())


def precise_now() -> datetime:
    """For deciding when to act; `now()` (whole seconds) is for what status shows."""
    return datetime.now(UTC)


def parse_spec(raw: Mapping[str, Any]) -> FaultInjectionSpec:
    try:
        return FaultInjectionSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise config_error_from_pydantic(exc.errors(), prefix="spec") from None


def holder_of(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class InjectionDriver:
    def __init__(
        self,
        op: Operator,
        namespace: str,
        name: str,
        uid: str,
        body: Mapping[str, Any],
        event: EventSink,
        lock_seed: Mapping[LockKey, Any],
    ) -> None:
        self.op = op
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.body = body  # kopf's live view: annotations change while we run
        self.event = event
        self.lock_seed = lock_seed
        status = FaultInjectionStatus.model_validate(dict(body.get("status") or {}))
        self.writer = StatusWriter(op.kube, namespace, name, uid, status)
        self.stopwatch = StopWatch([])
        metrics.PHASES.set(uid, status.phase)
        self.holder = holder_of(namespace, name)

    @property
    def status(self) -> FaultInjectionStatus:
        return self.writer.status

    @property
    def injection_id(self) -> str:
        return f"fi-{self.uid.replace('-', '')[:12]}"

    def paused(self) -> bool:
        annotations = (self.body.get("metadata") or {}).get("annotations") or {}
        return str(annotations.get(PAUSED_ANNOTATION, "")).lower() == "true"

    def has_finalizer(self, finalizer: str) -> bool:
        return finalizer in ((self.body.get("metadata") or {}).get("finalizers") or [])

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stopped: Stopped, finalizer: str) -> None:
        try:
            spec = parse_spec(self.body.get("spec") or {})
        except FaultlineError as exc:
            if self.status.phase is None:
                await self.fail("InvalidSpec", str(exc), condition="Selected")
            return
        generation = (self.body.get("metadata") or {}).get("generation")
        self.stopwatch = StopWatch(list(spec.stop_conditions))
        while not stopped:
            async with self.op.step_lock(self.uid):
                if self.uid in self.op.deleting or stopped:
                    return
                wait = await self.step(spec, generation, finalizer)
            if wait is DONE:
                return
            if wait:
                await stopped.wait(wait)

    async def step(
        self, spec: FaultInjectionSpec, generation: int | None, finalizer: str
    ) -> float | None:
        """One step toward the desired phase; returns how long to wait before the next
        (0 or None: at once; DONE: nothing left to do)."""
        phase = self.status.phase
        if phase in FINAL_PHASES:
            self.op.locks.release(self.holder)
            return DONE
        if phase in (None, Phase.PENDING):
            if not self.has_finalizer(finalizer):
                return 0.2  # kopf adds its finalizer first; nothing acts before that
            return None if await self.start(spec, generation) else RETRY_SECONDS
        if phase == Phase.INJECTING:
            await self.inject(spec)
            return None
        if phase == Phase.ACTIVE:
            return await self.hold()
        if phase == Phase.RECOVERING and not await self.recover_all():
            return RECOVER_RETRY_SECONDS
        return None

    async def engine(self, spec: FaultInjectionSpec) -> Engine:
        engine, _ = await self.op.targets.engine(self.namespace, spec.target_ref.name)
        return engine

    # --- Pending -> Injecting ---------------------------------------------------------------

    async def start(self, spec: FaultInjectionSpec, generation: int | None) -> bool:
        """Select nodes, take the locks, record the plan. False: try again later."""
        try:
            the_plan = plan(spec)
        except FaultlineError as exc:
            await self.fail("InvalidCommand", str(exc), condition="Selected")
            return True
        try:
            # Read from the API, not the watch: it may not have delivered yet.
            switch = await self.op.switches.engaged(self.namespace, fresh=True)
        except KillSwitchUnknownError as exc:
            await self.pending("KillSwitchUnknown", str(exc))
            return False
        if switch is not None:
            await self.pending(switch.reason, switch.message)
            return False
        try:
            engine = await self.engine(spec)
        except (TargetNotReadyError, FaultlineError) as exc:
            await self.pending("TargetNotReady", str(exc))
            return False
        if engine.config.safety.paused:
            await self.pending("TargetPaused", f"FaultTarget {spec.target_ref.name}: safety.paused")
            return False
        fault = the_plan.fault
        try:
            engine.check(fault)
            nodes = await select(engine, fault.kind, fault.target, the_plan.selector)
            safety.check(engine.config.safety, fault, nodes, len(engine.nodes))
            records = engine.plan(fault, nodes, self.injection_id)
        except SafetyError as exc:
            await self.fail("SafetyLimit", str(exc), condition="Selected")
            return True
        except FaultlineError as exc:
            await self.fail("SelectionFailed", str(exc), condition="Selected")
            return True
        target = spec.target_ref.name
        keys = [(self.namespace, target, n.fqdn) for n in nodes]
        if spec.overlap != OverlapPolicy.ALLOW:
            busy = self.op.locks.conflicts(keys, self.holder, self.lock_seed)
            if busy:
                detail = ", ".join(f"{node} is held by {who}" for node, who in sorted(busy.items()))
                if spec.overlap == OverlapPolicy.FAIL:
                    await self.fail("NodeBusy", detail, condition="Selected")
                    return True
                await self.pending("WaitingForNode", detail)
                return False
        self.op.locks.acquire(keys, self.holder)
        self.writer.condition("Selected", True, "Selected", ", ".join(n.fqdn for n in nodes))
        started = now()
        expires = started + timedelta(seconds=the_plan.duration) if the_plan.duration else None
        description = _describe(the_plan)
        if spec.dry_run:
            checks = await engine.verify(nodes)
            unreachable = [c.fqdn for c in checks if not c.reachable]
            await self.writer.update(
                phase=Phase.COMPLETED,
                reason="DryRun",
                message=(
                    f"would {description} on {', '.join(n.fqdn for n in nodes)}"
                    + (f"; unreachable: {', '.join(unreachable)}" if unreachable else "")
                ),
                action=description,
                target=target,
                injection_id=self.injection_id,
                records=records,
                observed_generation=generation,
                completed_at=started,
            )
            self.op.locks.release(self.holder)
            self.event("Normal", "DryRun", self.status.message or "")
            return True
        await self.writer.update(
            phase=Phase.INJECTING,
            reason=None,
            message=None,
            action=description,
            target=target,
            injection_id=self.injection_id,
            started_at=started,
            expires_at=expires,
            records=records,
            observed_generation=generation,
        )
        self.event("Normal", "Injecting", f"{description} on {len(nodes)} node(s)")
        return True

    # --- Injecting -> Active -----------------------------------------------------------------

    async def inject(self, spec: FaultInjectionSpec) -> None:
        try:
            engine = await self.engine(spec)
        except (TargetNotReadyError, FaultlineError) as exc:
            self.writer.condition("AllInjected", False, "TargetNotReady", str(exc))
            await self.writer.flush()
            await asyncio.sleep(RETRY_SECONDS)
            return
        records = self.status.records
        # After a crash, a record caught mid-way may be applied: undo it, then apply afresh.
        interrupted = [r for r in records if r.phase != RecordPhase.PENDING and r.needs_recovery]
        if interrupted:
            await asyncio.gather(*(self.recover_one(engine, r) for r in interrupted))
            for r in interrupted:
                if r.phase == RecordPhase.RECOVERED:
                    r.transition(RecordPhase.PENDING, "retrying after an interrupted attempt")
        todo = [r for r in records if r.phase == RecordPhase.PENDING]
        await asyncio.gather(*(self.apply_one(engine, r) for r in todo))
        failed = [r for r in records if r.phase != RecordPhase.INJECTED]
        if failed and len(failed) == len(records):
            message = "; ".join(f"{r.node}: {r.error}" for r in failed)
            self.writer.condition("AllInjected", False, "InjectionFailed", message)
            await self.writer.update(phase=Phase.RECOVERING, reason="InjectionFailed")
            self.event("Warning", "InjectionFailed", message)
            await self.recover_all(final=Phase.FAILED)
            return
        if failed:
            message = "; ".join(f"{r.node}: {r.error}" for r in failed)
            self.writer.condition("AllInjected", False, "PartiallyInjected", message)
            self.event("Warning", "PartiallyInjected", message)
        else:
            self.writer.condition("AllInjected", True, "Injected", f"{len(records)} record(s)")
        if spec.rollback == Rollback.NEVER:
            await self.writer.update(
                phase=Phase.COMPLETED, reason="RollbackNever", completed_at=now()
            )
            self.op.locks.release(self.holder)
            self.event("Normal", "Completed", "fault left in place (rollback: Never)")
            return
        await self.writer.update(phase=Phase.ACTIVE)
        expires = self.status.expires_at
        self.event(
            "Normal", "Active", f"active until {expires.isoformat()}" if expires else "active"
        )

    # --- Active --------------------------------------------------------------------------

    async def hold(self) -> float | None:
        """Returns how long to wait before looking again (None: look again at once)."""
        paused_now = self.paused()
        was_paused = any(c.type == "Paused" and c.status == "True" for c in self.status.conditions)
        expires = self.status.expires_at
        if paused_now and not was_paused:
            self.writer.condition("Paused", True, "Paused", "fault recovered while paused")
            await self.recover_records()
            await self.writer.flush()
            self.event("Normal", "Paused", "recovered; holding until unpaused")
            return None
        if not paused_now and was_paused:
            self.writer.condition("Paused", False, "Resumed", "")
            if expires is None or precise_now() < expires:
                for r in self.status.records:
                    r.transition(RecordPhase.PENDING, "re-injecting after pause")
                await self.writer.update(phase=Phase.INJECTING)
                self.event("Normal", "Resumed", "re-injecting until the original expiry")
            else:
                await self.writer.update(phase=Phase.RECOVERING)
            return None
        if self.op.targets.paused(self.namespace, self.status.target or ""):
            self.writer.condition("Paused", True, "KillSwitch", "the target's safety.paused is set")
            if await self.recover_all(final=Phase.ABORTED, reason="KillSwitch"):
                self.event("Warning", "Aborted", "kill switch: the target's safety.paused is set")
            return None
        switch = await self.op.switches.engaged(self.namespace)
        if switch is not None:
            self.writer.condition("Paused", True, switch.reason, switch.message)
            self.status.message = switch.message
            if not await self.recover_all(final=Phase.ABORTED, reason="KillSwitch"):
                return RECOVER_RETRY_SECONDS
            self.event("Warning", "Aborted", f"kill switch: {switch.message}")
            return None
        if expires is not None and precise_now() >= expires:
            await self.writer.update(phase=Phase.RECOVERING, reason="Expired")
            return None
        fired = await self.stopwatch.fired()
        if fired:
            self.writer.condition("Stopped", True, "StopCondition", fired)
            self.status.message = fired
            if await self.recover_all(final=Phase.ABORTED, reason="StopCondition"):
                self.event("Warning", "StopCondition", fired)
            return None
        remaining = (expires - precise_now()).total_seconds() if expires else 1.0
        due = self.stopwatch.next_due()
        return max(0.0, min(1.0, remaining, due if due is not None else 1.0))

    # --- Recovering -> Completed ------------------------------------------------------------

    async def recover_records(self) -> bool:
        todo = [
            r for r in self.status.records if r.needs_recovery or r.phase == RecordPhase.PENDING
        ]
        if not todo:
            return True
        spec = parse_spec(self.body.get("spec") or {})
        try:
            engine = await self.engine(spec)
        except (TargetNotReadyError, FaultlineError) as exc:
            self.writer.condition("AllRecovered", False, "TargetNotReady", str(exc))
            return False
        await asyncio.gather(*(self.recover_one(engine, r) for r in todo))
        return all(not r.needs_recovery for r in self.status.records)

    async def apply_one(self, engine: Engine, record: Record) -> None:
        await metrics.timed("apply", record, lambda: engine.apply(record, self.writer.save))

    async def recover_one(self, engine: Engine, record: Record) -> None:
        await metrics.timed("recover", record, lambda: engine.recover(record, self.writer.save))

    async def recover_all(self, final: Phase = Phase.COMPLETED, reason: str | None = None) -> bool:
        ok = await self.recover_records()
        if not ok:
            bad = [r for r in self.status.records if r.needs_recovery]
            message = "; ".join(f"{r.node}: {r.error}" for r in bad)
            self.writer.condition("AllRecovered", False, "RecoverFailed", message)
            await self.writer.flush()
            self.event("Warning", "RecoverFailed", message)
            return False
        self.writer.condition("AllRecovered", True, "Recovered", "")
        if reason is not None:
            self.status.reason = reason
        await self.writer.update(phase=final, completed_at=now())
        self.op.locks.release(self.holder)
        self.event("Normal", final.value, "every record recovered")
        return True

    async def fail(self, reason: str, message: str, condition: str) -> None:
        self.writer.condition(condition, False, reason, message)
        await self.writer.update(phase=Phase.FAILED, reason=reason, message=message)
        self.op.locks.release(self.holder)
        self.event("Warning", reason, message)

    async def pending(self, reason: str, message: str) -> None:
        current = (self.status.phase, self.status.reason, self.status.message)
        if current == (Phase.PENDING, reason, message):
            return
        await self.writer.update(phase=Phase.PENDING, reason=reason, message=message)
        self.event("Normal", reason, message)

    # --- deletion ----------------------------------------------------------------------------

    async def finalize(self, spec_raw: Mapping[str, Any]) -> bool:
        """Recover everything before the finalizer goes. False: retry later."""
        try:
            spec = parse_spec(spec_raw)
        except FaultlineError:
            spec = None
        if spec is not None and spec.rollback == Rollback.NEVER:
            self.op.locks.release(self.holder)
            return True
        if not any(r.needs_recovery for r in self.status.records):
            self.op.locks.release(self.holder)
            return True
        if spec is None:
            return False
        ok = await self.recover_records()
        if not ok:
            await self.writer.flush()
            return False
        if self.status.phase not in FINAL_PHASES:
            self.writer.condition("AllRecovered", True, "Recovered", "recovered on delete")
            await self.writer.update(phase=Phase.ABORTED, completed_at=now(), reason="Deleted")
        self.op.locks.release(self.holder)
        return True


def _describe(the_plan: Plan) -> str:
    f = the_plan.fault
    return f"{f.action} {f.kind}" + (f" {f.target}" if f.target else "")


def lock_entries(namespace: str, name: str, status: Mapping[str, Any] | None) -> dict[LockKey, str]:
    """For kopf's index: the (namespace, target, node) keys an injection's status holds."""
    if not status:
        return {}
    phase = status.get("phase")
    if phase in {p.value for p in FINAL_PHASES}:
        return {}
    target = status.get("target")
    out: dict[LockKey, str] = {}
    for raw in status.get("records") or []:
        try:
            record = Record.model_validate(raw)
        except ValidationError:
            continue
        if target and (record.needs_recovery or record.phase == RecordPhase.PENDING):
            out[(namespace, target, record.node)] = holder_of(namespace, name)
    return out

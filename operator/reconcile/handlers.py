"""kopf registrations, and nothing else: each hands its work to a handle_* module."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from faultline.models.resources import (
    FINALIZER,
    FORCE_RELEASE_ANNOTATION,
    GROUP,
    VERSION,
)
from faultline.models.schedule import SCHEDULE_LABEL
from faultline.reconcile import handle_kill_switch, handle_target, metrics
from faultline.reconcile.handle_injection import (
    InjectionDriver,
    Operator,
    holder_of,
    lock_entries,
)
from faultline.reconcile.handle_schedule import (
    ScheduleDriver,
    Wakeups,
    spec_unseen,
    wake_targets,
)
from faultline.reconcile.kube import Kube
from faultline.reconcile.locks import LockTable
from faultline.reconcile.targets import Targets

log = logging.getLogger(__name__)


class Runtime:
    """The operator's shared state, made once kopf has logged in."""

    info: kopf.ConnectionInfo | None = None
    operator: Operator | None = None

    def get(self) -> Operator:
        if self.operator is None:
            if self.info is None:
                raise kopf.TemporaryError("not logged in to the Kubernetes API yet", delay=1)
            kube = Kube(self.info)
            switches = handle_kill_switch.KillSwitches(kube, handle_kill_switch.SETTINGS)
            self.operator = Operator(
                kube=kube, targets=Targets(kube), locks=LockTable(), switches=switches
            )
        return self.operator


RUNTIME = Runtime()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.watching.server_timeout = 300
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # 5 INFO lines per command


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    RUNTIME.info = info
    return info


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    operator, RUNTIME.operator = RUNTIME.operator, None
    if operator is not None:
        await operator.targets.close()
        await operator.kube.close()


# --- FaultTarget --------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "faulttargets")
@kopf.on.create(GROUP, VERSION, "faulttargets")
@kopf.on.update(GROUP, VERSION, "faulttargets", field="spec")
async def discover_target(
    namespace: str | None, name: str, spec: Any, meta: Any, patch: kopf.Patch, **_: Any
) -> None:
    await _discover(namespace, name, spec, meta, patch)


async def _discover(
    namespace: str | None, name: str, spec: Any, meta: Any, patch: kopf.Patch
) -> None:
    status = await handle_target.discover(
        RUNTIME.get().targets, namespace or "default", name, spec, meta.get("generation")
    )
    patch.status.update(status)


@kopf.timer(GROUP, VERSION, "faulttargets", interval=30, initial_delay=30)
async def rediscover_target(
    namespace: str | None,
    name: str,
    spec: Any,
    meta: Any,
    status: Any,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    interval = int(spec.get("rediscoveryInterval", 300))
    last = status.get("lastDiscoveryTime")
    if last and datetime.fromisoformat(last) + timedelta(seconds=interval) > datetime.now(UTC):
        return
    await _discover(namespace, name, spec, meta, patch)


# --- FaultInjection -----------------------------------------------------------------------


@kopf.index(GROUP, VERSION, "faultinjections")
async def fault_locks(namespace: str | None, name: str, status: Any, **_: Any) -> dict[Any, str]:
    # async: a plain function would run in kopf's thread pool on every event.
    return lock_entries(namespace or "default", name, status)


def _events(body: kopf.Body) -> Any:
    def post(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    return post


@kopf.daemon(GROUP, VERSION, "faultinjections", cancellation_timeout=60)
async def drive_injection(
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    ns = namespace or "default"
    locks = kwargs["fault_locks"]  # kopf passes every index by its name
    driver = InjectionDriver(RUNTIME.get(), ns, name, uid, body, _events(body), locks)
    await driver.run(stopped, FINALIZER)


@kopf.on.delete(GROUP, VERSION, "faultinjections")
async def release_injection(
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    spec: Any,
    annotations: Any,
    **kwargs: Any,
) -> None:
    op = RUNTIME.get()
    ns = namespace or "default"
    op.deleting.add(uid)
    async with op.step_lock(uid):
        if str(annotations.get(FORCE_RELEASE_ANNOTATION, "")).lower() == "true":
            await op.kube.patch_status(ns, "faultinjections", name, {"leaked": True})
            op.locks.release(holder_of(ns, name))
            kopf.event(
                body,
                type="Warning",
                reason="ForcedRelease",
                message="finalizer removed without recovery; faults may remain (leaked: true)",
            )
            return
        fresh = await op.kube.get(ns, "faultinjections", name)
        locks = kwargs["fault_locks"]
        driver = InjectionDriver(op, ns, name, uid, fresh, _events(body), locks)
        if not await driver.finalize(spec):
            raise kopf.TemporaryError(
                "recovery failed; retrying. To give up, annotate "
                f"{FORCE_RELEASE_ANNOTATION}=true (status will say leaked: true)",
                delay=10,
            )
    metrics.PHASES.set(uid, None)
    op.steps.pop(uid, None)
    op.deleting.discard(uid)


# --- Kill switches (ConfigMaps named faultline-kill-switch) ----------------------------------


def _kill_switch(name: str | None, **_: Any) -> bool:
    # Filters before kopf invokes (or logs) anything: no other ConfigMap is processed.
    return handle_kill_switch.is_kill_switch(name)


@kopf.on.event("v1", "configmaps", when=_kill_switch)
def kill_switch_changed(namespace: str | None, type: str | None, body: kopf.Body, **_: Any) -> None:
    ns = namespace or "default"
    seen = None if type == "DELETED" else body
    changed, engaged = RUNTIME.get().switches.observe(ns, seen)
    if not changed:
        return
    SCHEDULE_WAKEUPS.wake_all()
    if engaged is not None:
        kopf.event(body, type="Warning", reason="KillSwitchEngaged", message=engaged.message)
    else:
        kopf.event(body, type="Normal", reason="KillSwitchLifted", message="injections may start")


# --- FaultSchedule ------------------------------------------------------------------------

SCHEDULE_WAKEUPS = Wakeups()


@kopf.daemon(GROUP, VERSION, "faultschedules", cancellation_timeout=30)
async def drive_schedule(
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    op = RUNTIME.get()
    driver = ScheduleDriver(
        op.kube,
        namespace or "default",
        name,
        uid,
        _events(body),
        SCHEDULE_WAKEUPS,
        switches=op.switches,
        target_paused=op.targets.paused,
    )
    await driver.run(stopped)


def _unseen_spec(body: kopf.Body, **_: Any) -> bool:
    return spec_unseen(body)


def _child_done(body: kopf.Body, type: str | None, **_: Any) -> bool:
    return bool(wake_targets(body, type))


# Wake-ups only (the filters keep kopf from logging every other watch event).
@kopf.on.event(GROUP, VERSION, "faultschedules", when=_unseen_spec)
def schedule_changed(uid: str, **_: Any) -> None:
    SCHEDULE_WAKEUPS.wake(uid)


@kopf.on.event(
    GROUP, VERSION, "faultinjections", labels={SCHEDULE_LABEL: kopf.PRESENT}, when=_child_done
)
def scheduled_child_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    for uid in wake_targets(body, type):
        SCHEDULE_WAKEUPS.wake(uid)

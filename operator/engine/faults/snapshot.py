"""Snapshot and revert a node through its power backend (libvirt), as power actions.

`snapshot` takes a named snapshot; rollback deletes it again if this fault created it.
`revert` first takes an undo snapshot of the node as it is, then reverts to the named one;
rollback reverts to the undo snapshot (running again if the node ran before) and deletes it.
"""

from __future__ import annotations

import re
from typing import Any

from faultline.drivers.power import PowerBackend, PowerState, PowerTarget
from faultline.models.errors import ConfigError
from faultline.models.faults import FaultSpec
from faultline.models.records import Record

SNAPSHOT_ACTIONS = ("snapshot", "revert")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check(spec: FaultSpec) -> None:
    name = spec.params.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            "params.name",
            f"{spec.action} needs a snapshot name (letters, digits, _ . : -), got {name!r}",
            "e.g. params: {name: before-upgrade}",
        )


def identity(spec: FaultSpec, record: Record) -> dict[str, Any]:
    ident: dict[str, Any] = {"snapshot": spec.params["name"]}
    if spec.action == "revert":
        ident["undoSnapshot"] = f"faultline-undo-{record.id}"
    return ident


async def apply(backend: PowerBackend, target: PowerTarget, record: Record) -> str:
    name = record.identity["snapshot"]
    state = await backend.state(target)
    if record.action == "snapshot":
        existed = name in await backend.snapshots(target)
        record.previous = {"power": state.value, "existed": existed}
        return await backend.snapshot(target, name, suspend=True)
    record.previous = {"power": state.value}
    undo = record.identity["undoSnapshot"]
    await backend.snapshot(target, undo, suspend=True)
    return await backend.revert(target, name, resume=True)


async def recover(backend: PowerBackend, target: PowerTarget, record: Record) -> str:
    name = record.identity["snapshot"]
    if record.action == "snapshot":
        if record.previous.get("existed", True):
            return f"snapshot {name} existed before; kept"
        return await backend.delete_snapshot(target, name)
    undo = record.identity["undoSnapshot"]
    if undo not in await backend.snapshots(target):
        return f"no undo snapshot {undo}: the revert never ran"
    running = record.previous.get("power", PowerState.ON.value) == PowerState.ON.value
    out = await backend.revert(target, undo, resume=running)
    await backend.delete_snapshot(target, undo)
    return f"{out}; undo snapshot deleted"

"""Node faults: reboot, shutdown, oom (fill RAM), stress (cpu / memory / io)."""

from __future__ import annotations

from typing import Any

from faultline.drivers import node as cmd
from faultline.drivers.shell import kill_by_marker, marked_pids
from faultline.engine.faults.base import FaultHandler, marker
from faultline.engine.faults.power import wait_booted
from faultline.engine.shell import CommandFailedError, NodeShell
from faultline.models.errors import ConfigError
from faultline.models.faults import NODE_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record

GOING_DOWN_TIMEOUT = 60.0
COMING_BACK_TIMEOUT = 300.0
DEFAULT_STRESS_SEC = 60


class NodeFault(FaultHandler):
    kind = FaultKind.NODE
    actions = NODE_ACTIONS

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        if spec.action == "stress":
            target = spec.params.get("target", "cpu")
            if target not in cmd.STRESS_TARGETS:
                raise ConfigError(
                    "target", f"{target!r} is not a stress target", f"use {cmd.STRESS_TARGETS}"
                )

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        ident: dict[str, Any] = {"marker": marker(record)}
        if spec.action == "stress":
            ident["target"] = spec.params.get("target", "cpu")
            ident["seconds"] = int(spec.params.get("sec") or DEFAULT_STRESS_SEC)
        return ident

    async def apply(self, sh: NodeShell, record: Record) -> str:
        action = record.action
        if action in ("reboot", "shutdown"):
            boot_id = (await sh.check(cmd.BOOT_ID, "read boot id")).strip()
            record.previous = {"bootId": boot_id, "power": "on"}
            await sh.check(cmd.REBOOT if action == "reboot" else cmd.SHUTDOWN, action)
            sh.forget()
            if action == "reboot":
                # Down and back may be quicker than one poll: a new boot id proves it either way.
                await sh.poll_value(cmd.BOOT_ID, f"changed:{boot_id}", COMING_BACK_TIMEOUT)
                return "rebooted: node is back with a new boot id"
            await sh.poll_value(cmd.BOOT_ID, "gone", GOING_DOWN_TIMEOUT)
            return "shut down: node no longer answers"
        if action == "oom":
            before = (await sh.check(cmd.OOM_KILLS, "read oom_kill counter")).strip()
            record.previous = {"oomKills": before}
            status = (await sh.check(cmd.oom_hog(record.identity["marker"]), "oom hog")).strip()
            after = (await sh.check(cmd.OOM_KILLS, "read oom_kill counter")).strip()
            if status != "137":
                raise CommandFailedError(f"memory hog ended with status {status}, not an OOM kill")
            return f"memory hog killed by the kernel (oom_kill {before} -> {after})"
        if action == "stress":
            ident = record.identity
            if (
                ident["target"] == "memory"
                and (await sh.check(cmd.has_stress_ng(), "look for stress-ng")).strip() != "yes"
            ):
                raise CommandFailedError("memory stress needs stress-ng on the node")
            pid = (
                await sh.check(
                    cmd.stress(ident["target"], ident["seconds"], ident["marker"]), "start stress"
                )
            ).strip()
            return f"{ident['target']} stress for {ident['seconds']} s (pid {pid})"
        raise AssertionError(action)

    async def recover(self, sh: NodeShell, record: Record) -> str:
        action = record.action
        if action == "reboot":
            old = record.previous.get("bootId", "")
            value = await sh.poll_value(cmd.BOOT_ID, f"changed:{old}", COMING_BACK_TIMEOUT)
            return f"node is up (boot id {value})"
        if action == "shutdown":
            value = await sh.reachable_value(cmd.BOOT_ID)
            if value is not None:
                return "node is up"
            if sh.power is None:
                raise CommandFailedError(
                    "node is still off and no power backend covers it: power it on "
                    "(configure `power` for this node to let Faultline do it)"
                )
            await sh.power.power_on(sh.power_target)
            value = await wait_booted(sh, record.previous.get("bootId"))
            return f"powered on through {sh.power.driver}; node is up (boot id {value})"
        mark = record.identity["marker"]
        await sh.run(kill_by_marker(mark, "KILL"))
        await sh.wait_for(f'[ -z "$({marked_pids(mark)})" ]', "the fault's processes are gone")
        return "no fault processes left"

"""Service faults: start, terminate, restart, kill, freeze/unfreeze, unplug/plug."""

from __future__ import annotations

from typing import Any

from faultline.drivers import network
from faultline.drivers.services import service_commands
from faultline.drivers.shell import find_pids, kill_by_marker, pattern_var, signal_pids
from faultline.engine.faults.base import FaultHandler, deadman_seconds, marker
from faultline.engine.shell import CommandFailedError, NodeShell
from faultline.models.config import ServiceConfig
from faultline.models.errors import ConfigError, UnknownServiceError
from faultline.models.faults import SERVICE_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record

DIRECTIONS = ("ingress", "egress", "both")


def running_check(grep: str) -> str:
    return f'{pattern_var(grep)}; pgrep -f -- "$pat" >/dev/null'


def stopped_check(grep: str) -> str:
    return f"! {{ {running_check(grep)}; }}"


def frozen_pids(grep: str) -> str:
    """Prints pids matching the pattern that are stopped (state T)."""
    return (
        f"for p in $({find_pids(grep)}); do "
        "case $(ps -o stat= -p $p 2>/dev/null) in T*) echo $p;; esac; done"
    )


class ServiceFault(FaultHandler):
    kind = FaultKind.SERVICE
    actions = SERVICE_ACTIONS

    def _service(self, name: str | None) -> ServiceConfig:
        if name is None or name not in self.config.services:
            raise UnknownServiceError(str(name), self.config.services)
        return self.config.services[name]

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        svc = self._service(spec.target)
        if spec.action in ("unplug", "plug"):
            if svc.port is None:
                raise ConfigError(
                    f"services.{spec.target}.port",
                    f"{spec.action} needs the service's port",
                    "add port: {protocol: tcp, number: N}",
                )
            direction = spec.params.get("direction", "ingress")
            if direction not in DIRECTIONS:
                raise ConfigError("direction", f"{direction!r} is invalid", f"use {DIRECTIONS}")

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        svc = self._service(spec.target)
        name = spec.target or ""
        ident: dict[str, Any] = {
            "service": name,
            "driver": svc.driver,
            "unit": svc.unit or name,
            "grep": svc.grep or svc.unit or name,
        }
        if spec.action in ("unplug", "plug") and svc.port is not None:
            ident["direction"] = spec.params.get("direction", "ingress")
            ident["protocol"] = svc.port.protocol
            ident["port"] = svc.port.number
            ident["comment"] = f"faultline:{spec.params.get('tag') or record.injection_id}"
        if spec.action in ("freeze", "unplug"):
            ident["marker"] = marker(record)
            ident["deadmanSec"] = deadman_seconds(spec.params)
        return ident

    def _rules(self, record: Record) -> list[network.DropRule]:
        i = record.identity
        return network.drop_rules(i["protocol"], i["port"], i["direction"], i["comment"])

    async def apply(self, sh: NodeShell, record: Record) -> str:
        name = record.target or ""
        svc = self._service(name)
        cmds = service_commands(name, svc)
        grep = cmds.grep
        action = record.action
        if action in ("start", "terminate", "restart", "kill"):
            # One round trip: observe the pids, act, verify the effect on the node.
            act, running_after = {
                "start": (cmds.ensure_started(), True),
                "terminate": (f'if [ -n "$obs" ]; then {cmds.terminate()}; fi', False),
                "restart": (cmds.restart(), True),
                "kill": (signal_pids("KILL", "$obs"), False),
            }[action]
            if action == "kill":
                condition = "! alive $obs"  # exactly the processes we killed are gone
            else:
                condition = running_check(grep) if running_after else stopped_check(grep)
            state = "runs" if running_after else "is stopped"
            pids, error = await sh.observe_act_wait(
                find_pids(grep), act, condition, f"{action} {name}: {name} {state}"
            )
            record.previous = {"running": bool(pids), "pids": pids}
            if error:
                raise CommandFailedError(error)
            return _outcome(action, pids)
        pids = (await sh.check(find_pids(grep), "find processes")).split()
        record.previous = {"running": bool(pids), "pids": pids}
        if action == "freeze":
            if not pids:
                raise_not_running(name)
            ident = record.identity
            cont = signal_pids("CONT", f"$({frozen_pids(grep)})")
            await sh.check(
                network.deadman(cont, ident["deadmanSec"], ident["marker"]), "arm unfreeze timer"
            )
            await sh.check(signal_pids("STOP", f"$({find_pids(grep)})"), "freeze")
            return f"froze pids {' '.join(pids)}; self-unfreeze in {ident['deadmanSec']} s"
        if action == "unfreeze":
            await sh.run(signal_pids("CONT", f"$({frozen_pids(grep)})"))
            await sh.wait_for(f'[ -z "$({frozen_pids(grep)})" ]', f"{name} runs again")
            return "unfrozen"
        if action == "unplug":
            rules = self._rules(record)
            ident = record.identity
            restore = "; ".join(r.delete() for r in rules)
            await sh.check(
                network.deadman(restore, ident["deadmanSec"], ident["marker"]), "arm replug timer"
            )
            await sh.check("; ".join(r.insert() for r in rules), "insert iptables rule")
            what = f"{ident['direction']} {ident['protocol']}/{ident['port']}"
            return f"dropping {what} ({ident['comment']})"
        if action == "plug":
            await sh.check(" && ".join(r.delete() for r in self._rules(record)), "remove rule")
            return "plugged"
        raise AssertionError(action)

    async def recover(self, sh: NodeShell, record: Record) -> str:
        name = record.target or ""
        cmds = service_commands(name, self._service(name))
        grep = cmds.grep
        action = record.action
        was_running = record.previous.get("running", True)
        if action in ("terminate", "kill"):
            if not was_running:
                return "was not running before; nothing to restore"
            check = running_check(grep)
            _, error = await sh.observe_act_wait(
                "true", cmds.ensure_started(), check, f"{name} runs"
            )
            if error:
                raise CommandFailedError(error)
            return "running"
        if action == "start":
            if was_running:
                return "was running before; left running"
            await sh.check(cmds.terminate(), f"stop {name}")
            await sh.wait_for(stopped_check(grep), f"{name} stopped")
            return "stopped again"
        if action in ("restart", "unfreeze", "plug"):
            return "nothing to undo"
        if action == "freeze":
            await sh.run(
                signal_pids("CONT", f"$({frozen_pids(grep)})")
                + "; "
                + kill_by_marker(record.identity["marker"])
            )
            await sh.wait_for(f'[ -z "$({frozen_pids(grep)})" ]', f"{name} no longer frozen")
            return "unfrozen"
        if action == "unplug":
            rules = self._rules(record)
            await sh.check("; ".join(r.delete() for r in rules), "remove iptables rule")
            await sh.run(kill_by_marker(record.identity["marker"]))
            for rule in rules:
                if (await sh.run(rule.present())).ok:
                    raise_still_present(rule.comment)
            return "plugged"
        raise AssertionError(action)


def _outcome(action: str, pids: list[str]) -> str:
    listed = " ".join(pids)
    if action == "start":
        return "already running" if pids else "started"
    if action == "restart":
        return f"restarted (pids were {listed})" if pids else "restarted (was not running)"
    if not pids:
        return "was not running"
    return f"{'killed' if action == 'kill' else 'terminated'} pids {listed}"


def raise_not_running(name: str) -> None:
    raise CommandFailedError(f"{name} is not running on this node; nothing to freeze")


def raise_still_present(comment: str) -> None:
    raise CommandFailedError(f"iptables rule {comment} is still present after removal")

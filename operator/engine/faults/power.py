"""Power faults through a backend (BMC, hypervisor, cloud API): off, on, reset, shutdown.

Each records the previous power state (and boot id when the node answered) so recovery
restores exactly that, and verifies it over SSH: a node is back when it answers with a
new boot id.
"""

from __future__ import annotations

from typing import Any

from faultline.drivers import node as cmd
from faultline.drivers.power import PowerBackend, PowerState
from faultline.engine.faults.base import FaultHandler
from faultline.engine.shell import CommandFailedError, NodeShell
from faultline.models.faults import POWER_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record

BOOT_TIMEOUT = 300.0


def backend_of(sh: NodeShell) -> PowerBackend:
    if sh.power is None:
        raise CommandFailedError(
            f"no power backend covers {sh.node.fqdn}: configure `power` (ipmi, libvirt, "
            "redfish) with this node in its `nodes` (or leave `nodes` empty for all)"
        )
    return sh.power


async def wait_booted(sh: NodeShell, old_boot_id: str | None) -> str:
    """Wait until the node answers over SSH with a boot id other than `old_boot_id`."""
    value = await sh.poll_value(cmd.BOOT_ID, f"changed:{old_boot_id or ''}", BOOT_TIMEOUT)
    return value or ""


class PowerFault(FaultHandler):
    kind = FaultKind.POWER
    actions = POWER_ACTIONS

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        return {}

    async def apply(self, sh: NodeShell, record: Record) -> str:
        backend = backend_of(sh)
        target = sh.power_target
        record.identity = {**record.identity, "backend": backend.driver}
        if target.bmc is not None:
            record.identity["bmc"] = target.bmc.address  # never the credentials
        state = await backend.state(target)
        boot_id = await sh.reachable_value(cmd.BOOT_ID) if state == PowerState.ON else None
        record.previous = {"power": state.value, "bootId": boot_id}
        action = record.action
        if action == "poweroff":
            out = await backend.power_off(target)
        elif action == "shutdown":
            out = await backend.shutdown(target)
        elif action == "poweron":
            out = await backend.power_on(target)
            await wait_booted(sh, None)
            return f"{out}; node answers"
        else:
            out = await backend.reset(target)
            new = await wait_booted(sh, boot_id)
            return f"{out}; node is back with boot id {new}"
        if await backend.state(target) != PowerState.OFF:
            raise CommandFailedError(f"{backend.driver} still reports {target.fqdn} on")
        sh.forget()
        return out

    async def recover(self, sh: NodeShell, record: Record) -> str:
        backend = backend_of(sh)
        target = sh.power_target
        previous = record.previous.get("power", PowerState.ON.value)
        if record.action == "poweron":
            if previous == PowerState.OFF.value:
                out = await backend.power_off(target)
                sh.forget()
                return out
            return "was on before; left on"
        if previous == PowerState.OFF.value:
            return "was off before; left off"
        if await backend.state(target) != PowerState.ON:
            await backend.power_on(target)
        old = record.previous.get("bootId") if record.action != "reset" else None
        boot_id = await wait_booted(sh, old)
        return f"powered on; node answers (boot id {boot_id})"

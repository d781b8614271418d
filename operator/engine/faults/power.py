"""Power faults through a backend (BMC, hypervisor, cloud API): off, on, reset, shutdown.

Each records the previous power state (and boot id when the node answered) so recovery
restores exactly that, and verifies it over SSH: a node is back when it answers with a
new boot id. A node that was on but did not answer SSH before the fault (a Ganeti
instance or a Nova server without SSH access) is verified through its backend instead:
back when the backend reports it on; the output says so.
"""

from __future__ import annotations

from typing import Any

from faultline.drivers import node as cmd
from faultline.drivers.power import PowerBackend, PowerState
from faultline.engine.faults import snapshot
from faultline.engine.faults.base import FaultHandler
from faultline.engine.faults.nova import COMPUTE, NovaApi, nova_host
from faultline.engine.shell import CommandFailedError, NodeShell
from faultline.models.errors import ConfigError
from faultline.models.faults import POWER_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record

BOOT_TIMEOUT = 300.0
#: FaultSpec param: force the node's nova-compute down while it is off (OPNFV Doctor).
MARK_HOST_DOWN = "mark_host_down"
MARKABLE = ("poweroff", "shutdown")


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

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.nova = NovaApi(self)

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        if spec.action in snapshot.SNAPSHOT_ACTIONS:
            snapshot.check(spec)
        if spec.params.get(MARK_HOST_DOWN):
            if spec.action not in MARKABLE:
                raise ConfigError(
                    "markHostDown",
                    f"applies to {' and '.join(MARKABLE)}, not {spec.action}",
                    "drop markHostDown or power the node off",
                )
            if self.config.openstack is None:
                raise ConfigError(
                    "markHostDown",
                    "forcing nova-compute down needs the cloud's API",
                    "add the `openstack` section to the FaultTarget",
                )

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        if spec.action in snapshot.SNAPSHOT_ACTIONS:
            return snapshot.identity(spec, record)
        if not spec.params.get(MARK_HOST_DOWN):
            return {}
        labels = next((n.labels for n in self.config.nodes if n.fqdn == record.node), {})
        return {"markHostDown": {"host": nova_host(labels, record.node), "binary": COMPUTE}}

    async def apply(self, sh: NodeShell, record: Record) -> str:
        if record.action in snapshot.SNAPSHOT_ACTIONS:
            backend = backend_of(sh)
            record.identity = {**record.identity, "backend": backend.driver}
            return await snapshot.apply(backend, sh.power_target, record)
        out = await self._power_apply(sh, record)
        mark = record.identity.get("markHostDown")
        if mark:
            nova = self.nova.get()
            before = await nova.service(mark["host"], mark["binary"])
            record.previous["novaForcedDown"] = before.forced_down
            await nova.set_forced_down(mark["host"], mark["binary"], True)
            record.observed = await nova.host_status(mark["host"])
            out += f"; {mark['binary']} on {mark['host']} forced down"
        return out

    async def recover(self, sh: NodeShell, record: Record) -> str:
        if record.action in snapshot.SNAPSHOT_ACTIONS:
            return await snapshot.recover(backend_of(sh), sh.power_target, record)
        # Doctor's order: the node runs again first, only then may Nova schedule onto it.
        out = await self._power_recover(sh, record)
        mark = record.identity.get("markHostDown")
        if mark:
            nova = self.nova.get()
            want = bool(record.previous.get("novaForcedDown", False))
            now = await nova.service(mark["host"], mark["binary"])
            if now.forced_down != want:
                await nova.set_forced_down(mark["host"], mark["binary"], want)
            record.observed = await nova.host_status(mark["host"])
            out += f"; {mark['binary']} forced_down={str(want).lower()}"
        return out

    async def close(self) -> None:
        await self.nova.close()

    async def _power_apply(self, sh: NodeShell, record: Record) -> str:
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
            if state == PowerState.ON and boot_id is None:  # on, but SSH did not answer
                return f"{out}; {await _reported_on(backend, sh)}"
            new = await wait_booted(sh, boot_id)
            return f"{out}; node is back with boot id {new}"
        if await backend.state(target) != PowerState.OFF:
            raise CommandFailedError(f"{backend.driver} still reports {target.fqdn} on")
        sh.forget()
        return out

    async def _power_recover(self, sh: NodeShell, record: Record) -> str:
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
        old = record.previous.get("bootId")
        if "bootId" in record.previous and old is None:  # on, but SSH did not answer then
            return f"powered on; {await _reported_on(backend, sh)}"
        boot_id = await wait_booted(sh, old if record.action != "reset" else None)
        return f"powered on; node answers (boot id {boot_id})"


async def _reported_on(backend: PowerBackend, sh: NodeShell) -> str:
    """Verification for a node that did not answer SSH before the fault: its backend."""
    if await backend.state(sh.power_target) != PowerState.ON:
        raise CommandFailedError(f"{backend.driver} does not report {sh.node.fqdn} on")
    return (
        f"{backend.driver} reports it on (it did not answer SSH before the fault, "
        "so SSH is not waited for)"
    )

"""Network faults: disconnect / connect a named network (link down / up)."""

from __future__ import annotations

from typing import Any

from faultline.drivers import network
from faultline.drivers.shell import kill_by_marker
from faultline.engine.faults.base import FaultHandler, deadman_seconds, marker
from faultline.engine.shell import CommandFailedError, NodeShell
from faultline.models.errors import UnknownNetworkError
from faultline.models.faults import NETWORK_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record


class NetworkFault(FaultHandler):
    kind = FaultKind.NETWORK
    actions = NETWORK_ACTIONS

    def _interface(self, name: str | None) -> str:
        if name is None or name not in self.config.networks:
            raise UnknownNetworkError(str(name), self.config.networks)
        return self.config.networks[name]

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        self._interface(spec.target)

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        return {
            "network": spec.target,
            "interface": self._interface(spec.target),
            "marker": marker(record),
            "deadmanSec": deadman_seconds(spec.params),
        }

    async def apply(self, sh: NodeShell, record: Record) -> str:
        ident = record.identity
        iface = ident["interface"]
        state = (await sh.check(network.link_state(iface), f"read {iface} state")).strip()
        record.previous = {"state": state}
        want = "down" if record.action == "disconnect" else "up"
        if record.action == "disconnect":
            # The timer first: if this cuts our own path, the node still heals itself.
            restore = network.link_set(iface, "up")
            await sh.check(
                network.deadman(restore, ident["deadmanSec"], ident["marker"]),
                "arm reconnect timer",
            )
        await sh.check(network.link_set(iface, want), f"set {iface} {want}")
        return f"{iface} {want} (was {state})" + (
            f"; self-reconnect in {ident['deadmanSec']} s" if want == "down" else ""
        )

    async def recover(self, sh: NodeShell, record: Record) -> str:
        ident = record.identity
        iface = ident["interface"]
        previous = record.previous.get("state", "UP")
        want = "up" if previous == "UP" else "down"
        await sh.check(network.link_set(iface, want), f"set {iface} {want}")
        await sh.run(kill_by_marker(ident["marker"]))
        state = (await sh.check(network.link_state(iface), f"read {iface} state")).strip()
        if state != previous:
            raise CommandFailedError(f"{iface} is {state}, expected {previous}")
        return f"{iface} {want}"

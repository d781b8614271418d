"""Power for nodes that are themselves Nova servers (an undercloud, a virtual lab).

Stop / start / hard reboot through Nova's server actions, waiting until Nova reports the
new status. A node is matched to its server by `args.servers` (fqdn -> server name or id),
else by a server named like the node. The credentials are the backend's own `args`
(same fields as the target's `openstack` section): the cloud that hosts the nodes is often
not the cloud under test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import Field

from faultline.drivers.openstack import OpenStackClient, OpenStackError
from faultline.drivers.power import (
    PowerBackend,
    PowerError,
    PowerState,
    PowerTarget,
    parse_args,
    register,
)
from faultline.models.config import PowerConfig
from faultline.models.openstack import OpenStackAuth

ON_STATUSES = frozenset(
    {"ACTIVE", "REBOOT", "HARD_REBOOT", "PASSWORD", "RESCUE", "MIGRATING", "RESIZE"}
)
OFF_STATUSES = frozenset({"SHUTOFF"})


class OpenStackServerArgs(OpenStackAuth):
    servers: dict[str, str] = Field(
        default_factory=dict, description="Node fqdn -> Nova server name or id."
    )
    timeout: float = Field(default=300.0, gt=0, description="Seconds to wait per action.")
    poll_interval: float = Field(default=0.5, gt=0)


@register
class OpenStackServerPower(PowerBackend):
    driver = "openstack-server"

    def __init__(self, config: PowerConfig) -> None:
        super().__init__(config)
        self.args = parse_args(OpenStackServerArgs, config)
        self.client = OpenStackClient(self.args)

    def _name(self, node: PowerTarget) -> str:
        return self.args.servers.get(node.fqdn, node.fqdn)

    async def _server(self, node: PowerTarget) -> Any:
        name = self._name(node)

        def find(conn: Any) -> Any:
            server = conn.compute.find_server(name, ignore_missing=True, all_projects=True)
            if server is None:
                raise PowerError(
                    f"openstack-server: no Nova server {name!r} for node {node.fqdn} "
                    "(map it in power args.servers: {fqdn: server name or id})"
                )
            return conn.compute.get_server(server.id)

        try:
            return await self.client.call(f"find server {name}", find)
        except OpenStackError as exc:
            raise PowerError(f"openstack-server: {node.fqdn}: {exc}") from None

    @staticmethod
    def _power(server: Any, node: PowerTarget) -> PowerState:
        status = str(server.status).upper()
        if status in OFF_STATUSES:
            return PowerState.OFF
        if status in ON_STATUSES:
            return PowerState.ON
        raise PowerError(
            f"openstack-server: server {server.name} of {node.fqdn} is {status}, neither on nor off"
        )

    async def _act(self, node: PowerTarget, verb: str, fn: Any) -> None:
        try:
            await self.client.call(f"{verb} server {self._name(node)}", fn)
        except OpenStackError as exc:
            raise PowerError(f"openstack-server: {node.fqdn}: {exc}") from None

    async def _wait(self, node: PowerTarget, status: str) -> None:
        deadline = time.monotonic() + self.args.timeout
        while True:
            server = await self._server(node)
            now = str(server.status).upper()
            if now == status and not getattr(server, "task_state", None):
                return
            if now == "ERROR":
                raise PowerError(f"openstack-server: server of {node.fqdn} went to ERROR")
            if time.monotonic() > deadline:
                raise PowerError(
                    f"openstack-server: {node.fqdn} still {now} after {self.args.timeout:g} s "
                    f"(waiting for {status})"
                )
            await asyncio.sleep(self.args.poll_interval)

    async def state(self, node: PowerTarget) -> PowerState:
        return self._power(await self._server(node), node)

    async def power_off(self, node: PowerTarget) -> str:
        server = await self._server(node)
        if self._power(server, node) == PowerState.OFF:
            return "already off"
        await self._act(node, "stop", lambda conn: conn.compute.stop_server(server.id))
        await self._wait(node, "SHUTOFF")
        return "stopped (SHUTOFF)"

    async def shutdown(self, node: PowerTarget) -> str:
        # Nova's stop asks the guest to shut down cleanly first: the graceful verb as well.
        return await self.power_off(node)

    async def power_on(self, node: PowerTarget) -> str:
        server = await self._server(node)
        if self._power(server, node) == PowerState.ON:
            return "already on"
        await self._act(node, "start", lambda conn: conn.compute.start_server(server.id))
        await self._wait(node, "ACTIVE")
        return "started (ACTIVE)"

    async def reset(self, node: PowerTarget) -> str:
        server = await self._server(node)
        if self._power(server, node) == PowerState.OFF:
            return await self.power_on(node)
        await self._act(node, "reboot", lambda conn: conn.compute.reboot_server(server.id, "HARD"))
        await self._wait(node, "ACTIVE")
        return "hard rebooted (ACTIVE)"

    async def close(self) -> None:
        await self.client.close()

"""Nova faults through the API: force a compute service down (OPNFV Doctor), disable it.

A record is one Nova service on the selected node's Nova host (the node's `nova.host`
label, else its fqdn). It keeps the service's previous forced_down / status / reason, and
recovery restores exactly that: a service that was disabled before stays disabled.
What tenants see (servers' host_status on that host) is read after each step.
"""

from __future__ import annotations

from typing import Any

from faultline.drivers.nova import Nova
from faultline.drivers.openstack import OpenStackClient
from faultline.engine.faults.base import FaultHandler
from faultline.engine.shell import NodeShell
from faultline.models.errors import ConfigError
from faultline.models.faults import NOVA_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record

COMPUTE = "nova-compute"
HOST_LABEL = "nova.host"


def nova_host(labels: dict[str, str], fqdn: str) -> str:
    return labels.get(HOST_LABEL) or fqdn


class NovaApi:
    """The Nova client a handler opens on first use (configs without OpenStack never do)."""

    def __init__(self, handler: FaultHandler) -> None:
        self._handler = handler
        self._client: OpenStackClient | None = None

    def get(self) -> Nova:
        auth = self._handler.config.openstack
        if auth is None:
            raise ConfigError(
                "openstack", "Nova actions need the cloud's API", "add the `openstack` section"
            )
        if self._client is None:
            self._client = OpenStackClient(auth)
        return Nova(self._client)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


class NovaFault(FaultHandler):
    kind = FaultKind.NOVA
    actions = NOVA_ACTIONS

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.api = NovaApi(self)

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        if self.config.openstack is None:
            raise ConfigError(
                "openstack",
                f"nova {spec.action} talks to Nova's API, and this target has no credentials",
                "add `openstack: {cloud: ..., cloudsFile: ...}` (or inline credentials)",
            )

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        labels = next((n.labels for n in self.config.nodes if n.fqdn == record.node), {})
        ident: dict[str, Any] = {
            "host": nova_host(labels, record.node),
            "binary": spec.target or COMPUTE,
        }
        if spec.action == "disable":
            ident["reason"] = str(
                spec.params.get("reason") or f"faultline injection {record.injection_id}"
            )
        return ident

    async def apply(self, sh: NodeShell, record: Record) -> str:
        nova = self.api.get()
        host, binary = record.identity["host"], record.identity["binary"]
        before = await nova.service(host, binary)
        record.previous = before.as_previous()
        action = record.action
        if action in ("force-down", "unset-force-down"):
            forced = action == "force-down"
            after = await nova.set_forced_down(host, binary, forced)
            out = f"{binary} on {host}: forced_down={str(after.forced_down).lower()}"
        else:
            enabled = action == "enable"
            reason = record.identity.get("reason")
            after = await nova.set_enabled(host, binary, enabled, reason)
            out = f"{binary} on {host}: {after.status}"
        record.observed = await nova.host_status(host)
        return out

    async def recover(self, sh: NodeShell, record: Record) -> str:
        nova = self.api.get()
        host, binary = record.identity["host"], record.identity["binary"]
        now = await nova.service(host, binary)
        prev = record.previous
        if record.action in ("force-down", "unset-force-down"):
            # No previous state means we crashed before reading it: the normal state is back.
            want = bool(prev.get("forcedDown", False))
            if now.forced_down != want:
                await nova.set_forced_down(host, binary, want)
            out = f"{binary} on {host}: forced_down={str(want).lower()}"
        else:
            want_enabled = prev.get("status", "enabled") == "enabled"
            if now.enabled != want_enabled:
                await nova.set_enabled(host, binary, want_enabled, prev.get("disabledReason"))
            out = f"{binary} on {host}: {'enabled' if want_enabled else 'disabled (as before)'}"
        record.observed = await nova.host_status(host)
        return out

    async def close(self) -> None:
        await self.api.close()

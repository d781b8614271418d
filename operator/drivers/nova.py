"""Nova's fault-management API, as OPNFV Doctor uses it: force a compute service down,
disable / enable it, and read what tenants see of a host (servers' host_status).

openstacksdk picks the call by microversion: 2.53+ updates the service by id, 2.11-2.52
uses the force-down action by host and binary (older clouds).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from faultline.drivers.openstack import OpenStackClient, OpenStackError

#: servers' host_status exists from this microversion on (admin only).
HOST_STATUS_MICROVERSION = "2.16"


class NovaServiceNotFoundError(OpenStackError):
    """No service with that binary on that host."""


@dataclass(frozen=True)
class ServiceState:
    id: str
    host: str
    binary: str
    status: str  # enabled | disabled
    state: str  # up | down
    forced_down: bool
    disabled_reason: str | None

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    def as_previous(self) -> dict[str, Any]:
        return {
            "serviceId": self.id,
            "forcedDown": self.forced_down,
            "status": self.status,
            "disabledReason": self.disabled_reason,
        }


def _state(svc: Any) -> ServiceState:
    return ServiceState(
        id=str(svc.id),
        host=str(svc.host),
        binary=str(svc.binary),
        status=str(svc.status),
        state=str(svc.state),
        forced_down=bool(svc.is_forced_down),
        disabled_reason=svc.disabled_reason,
    )


def _one(conn: Any, host: str, binary: str) -> Any:
    found = list(conn.compute.services(host=host, binary=binary))
    if not found:
        hosts = sorted({s.host for s in conn.compute.services(binary=binary)})
        raise NovaServiceNotFoundError(
            f"Nova has no {binary} service on host {host!r}; it has one on: "
            f"{', '.join(hosts) or 'no host'} (map the node to its Nova host with the label "
            "nova.host, or discover nodes from Nova)"
        )
    return found[0]


class Nova:
    def __init__(self, client: OpenStackClient) -> None:
        self.client = client

    async def service(self, host: str, binary: str) -> ServiceState:
        def find(conn: Any) -> ServiceState:
            return _state(_one(conn, host, binary))

        return await self.client.call(f"find {binary} on {host}", find)

    async def set_forced_down(self, host: str, binary: str, forced: bool) -> ServiceState:
        def act(conn: Any) -> None:
            svc = _one(conn, host, binary)
            if bool(svc.is_forced_down) == forced:
                return
            conn.compute.update_service_forced_down(svc, host=host, binary=binary, forced=forced)

        verb = "force down" if forced else "unset force-down of"
        await self.client.call(f"{verb} {binary} on {host}", act)
        after = await self.service(host, binary)
        if after.forced_down != forced:
            raise OpenStackError(
                f"{binary} on {host}: Nova still says forced_down={after.forced_down}"
            )
        return after

    async def set_enabled(
        self, host: str, binary: str, enabled: bool, reason: str | None = None
    ) -> ServiceState:
        def act(conn: Any) -> None:
            svc = _one(conn, host, binary)
            if (svc.status == "enabled") == enabled:
                return  # Nova refuses an update that changes nothing but the reason
            if enabled:
                conn.compute.enable_service(svc, host=host, binary=binary)
            else:
                conn.compute.disable_service(svc, host=host, binary=binary, disabled_reason=reason)

        verb = "enable" if enabled else "disable"
        await self.client.call(f"{verb} {binary} on {host}", act)
        after = await self.service(host, binary)
        if after.enabled != enabled:
            raise OpenStackError(f"{binary} on {host}: Nova still says status={after.status}")
        return after

    async def host_status(self, host: str) -> dict[str, Any]:
        """What tenants see of the servers on `host`: counts by host_status (UP, DOWN,
        UNKNOWN, MAINTENANCE, or "" where the cloud does not say)."""

        def read(conn: Any) -> dict[str, Any]:
            servers = list(conn.compute.servers(details=True, all_projects=True, compute_host=host))
            counts = Counter(str(s.host_status or "") for s in servers)
            return {"servers": len(servers), "hostStatus": dict(sorted(counts.items()))}

        return await self.client.call(f"read host_status of servers on {host}", read)

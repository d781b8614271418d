"""The `openstack-server` power backend: nodes that are Nova servers, on the lab's real Nova
(fake virt driver): ACTIVE -> SHUTOFF -> ACTIVE, seen through the test's own connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from faultline.drivers.power import PowerError, PowerState, PowerTarget, build_backend
from faultline.lab import Lab
from faultline.models.config import PowerConfig
from openstack_support import fake_server

pytestmark = pytest.mark.lab


@pytest.fixture
def vm(os_conn: Any) -> Iterator[Any]:
    with fake_server(os_conn, "fl-undercloud-node") as server:
        yield server


def backend_for(os_lab: Lab, **args: Any) -> Any:
    section = yaml.safe_load(os_lab.config_path.read_text())["openstack"]
    return build_backend(
        PowerConfig(driver="openstack-server", args={**section, "pollInterval": 0.2, **args})
    )


def status(os_conn: Any, server: Any) -> str:
    return str(os_conn.compute.get_server(server.id).status)


def test_stop_start_and_hard_reboot(os_lab: Lab, os_conn: Any, vm: Any) -> None:
    backend = backend_for(os_lab, servers={"undercloud-node1": vm.name})
    node = PowerTarget("undercloud-node1", "192.0.2.10")

    async def run() -> list[Any]:
        try:
            seen = [await backend.state(node)]
            seen.append(await backend.power_off(node))
            seen.append(status(os_conn, vm))
            seen.append(await backend.power_off(node))  # idempotent
            seen.append(await backend.state(node))
            seen.append(await backend.reset(node))  # off: reset powers on
            seen.append(status(os_conn, vm))
            seen.append(await backend.reset(node))
            seen.append(status(os_conn, vm))
            return seen
        finally:
            await backend.close()

    seen = asyncio.run(run())
    assert seen == [
        PowerState.ON,
        "stopped (SHUTOFF)",
        "SHUTOFF",
        "already off",
        PowerState.OFF,
        "started (ACTIVE)",
        "ACTIVE",
        "hard rebooted (ACTIVE)",
        "ACTIVE",
    ]


def test_a_node_without_a_server_is_a_clear_error(os_lab: Lab) -> None:
    backend = backend_for(os_lab)

    async def run() -> None:
        try:
            await backend.state(PowerTarget("no-such-node", "192.0.2.11"))
        finally:
            await backend.close()

    with pytest.raises(PowerError, match=r"no Nova server 'no-such-node'.*args.servers"):
        asyncio.run(run())

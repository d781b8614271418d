"""Power faults through the libvirt backend against the lab's own libvirtd (test driver).

The `libvirt` add-on mirrors every domain onto a lab node, so a libvirt destroy really
powers the node off: the assertions look at SSH, the node's boot id, the lab's power state
and libvirt itself (through a client connection of the test's own).
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import faultline
from faultline.drivers.power import PowerError, PowerTarget, build_backend
from faultline.lab import Lab
from faultline.models.config import PowerConfig
from faultline.models.errors import ActionError, ConfigError
from faultline.models.faults import FaultKind, FaultSpec
from lab_observe import eventually, out, ssh_boot_id, sshd_answers
from lab_support import addon_lab, recovering_cloud

pytestmark = pytest.mark.lab

NODES = ("node1", "node2", "node3")


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vlab(lab_root: Path) -> Iterator[Lab]:
    """A lab of its own with the libvirt add-on (libvirtd + listener) up."""
    with addon_lab(lab_root, "libvirt-lab", ("libvirt",)) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def uri(vlab: Lab) -> str:
    data = yaml.safe_load(vlab.config_path.read_text())
    (power,) = data["power"]
    assert power["driver"] == "libvirt"
    return str(power["args"]["uri"])


@pytest.fixture(scope="module")
def virt(uri: str) -> Iterator[Any]:
    """A libvirt client connection of the test's own, to look at the domains."""
    libvirt = importlib.import_module("libvirt")  # installed by the add-on
    conn = libvirt.open(uri)
    try:
        yield conn
    finally:
        conn.close()


def domain_on(virt: Any, name: str) -> bool:
    return bool(virt.lookupByName(name).isActive())


@pytest.fixture
def healthy(vlab: Lab, virt: Any) -> Lab:
    """Every node powered on and healthy, and libvirt showing every domain running."""
    vlab.reset_state()
    eventually(lambda: all(domain_on(virt, n) for n in NODES), 10, "domains follow the lab")
    return vlab


@pytest.fixture
def cloud(healthy: Lab, tmp_path: Path) -> Iterator[Any]:
    with recovering_cloud(healthy.config_path, tmp_path) as the_cloud:
        yield the_cloud


# -- observing -------------------------------------------------------------------------------------


def boot_id(lab: Lab, node: str) -> str:
    return out(lab, node, "cat /proc/sys/kernel/random/boot_id")


def assert_off(lab: Lab, virt: Any, node: str) -> None:
    libvirt = importlib.import_module("libvirt")
    assert virt.lookupByName(node).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    eventually(lambda: lab.power(node, "status") == "off", 20, f"{node} powered off")
    assert not sshd_answers(lab, node)


def assert_back(lab: Lab, virt: Any, node: str, old_boot: str) -> None:
    assert domain_on(virt, node)
    eventually(lambda: lab.power(node, "status") == "on", 10, f"{node} on in the lab")
    new = ssh_boot_id(lab, node)
    assert new is not None and new != old_boot


def backend(uri: str, **args: Any) -> Any:
    return build_backend(PowerConfig(driver="libvirt", args={"uri": uri, **args}))


def target(lab: Lab, node: str, fqdn: str | None = None) -> PowerTarget:
    data = yaml.safe_load(lab.config_path.read_text())
    spec = next(n for n in data["discovery"]["static"]["nodes"] if n["fqdn"] == node)
    return PowerTarget(fqdn or node, spec["ip"], spec["mac"])


def renamed_config(lab: Lab, tmp_path: Path, node: str, fqdn: str, **args: Any) -> Path:
    """The lab's target with `node` known by another name than its domain's."""
    data = yaml.safe_load(lab.config_path.read_text())
    for spec in data["discovery"]["static"]["nodes"]:
        if spec["fqdn"] == node:
            spec["fqdn"] = fqdn
    data["power"][0]["args"].update(args)
    path = tmp_path / "renamed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- the PowerFault through libvirt ----------------------------------------------------------------


def test_poweroff_cuts_the_node_and_recover_boots_it(healthy: Lab, virt: Any, cloud: Any) -> None:
    before = {n: boot_id(healthy, n) for n in NODES}
    result = cloud.get_nodes(["node2"]).poweroff()
    assert result.ok
    record = result.records[0]
    assert "domain node2 destroyed" in record.output
    assert record.previous["power"] == "on"
    assert record.identity["backend"] == "libvirt"
    assert_off(healthy, virt, "node2")
    for other in ("node1", "node3"):  # untouched
        assert domain_on(virt, other)
        assert boot_id(healthy, other) == before[other]
    rec = cloud.recover(result)
    assert rec.ok
    assert "boot id" in rec.records[0].output
    assert_back(healthy, virt, "node2", before["node2"])


def test_reset_reboots_with_a_new_boot_id(healthy: Lab, virt: Any, cloud: Any) -> None:
    old = boot_id(healthy, "node3")
    result = cloud.get_nodes(["node3"]).reset()
    assert result.ok
    assert "domain node3 reset" in result.records[0].output
    assert_back(healthy, virt, "node3", old)
    assert cloud.recover(result).ok
    assert domain_on(virt, "node3")


def test_graceful_shutdown_then_recover(healthy: Lab, virt: Any, cloud: Any) -> None:
    old = boot_id(healthy, "node1")
    spec = FaultSpec(kind=FaultKind.POWER, action="shutdown")
    result = cloud.act(spec, cloud.get_nodes(["node1"]))
    assert "shut down gracefully" in result.records[0].output
    assert_off(healthy, virt, "node1")
    assert cloud.recover(result).ok
    assert_back(healthy, virt, "node1", old)


def test_poweron_of_an_off_node_and_recover_turns_it_off_again(
    healthy: Lab, virt: Any, cloud: Any
) -> None:
    healthy.power("node2", "off")  # outside libvirt: the listener follows onto the domain
    eventually(lambda: not domain_on(virt, "node2"), 10, "libvirt follows the lab")
    result = cloud.get_nodes(["node2"]).poweron()
    assert result.ok
    assert result.records[0].previous["power"] == "off"
    assert domain_on(virt, "node2")
    assert ssh_boot_id(healthy, "node2") is not None
    rec = cloud.recover(result)
    assert rec.ok
    assert "destroyed" in rec.records[0].output
    assert_off(healthy, virt, "node2")


def test_poweroff_of_an_off_node_says_so_and_recover_leaves_it_off(
    healthy: Lab, virt: Any, cloud: Any
) -> None:
    virt.lookupByName("node3").destroy()  # a libvirt client of its own: the node goes off
    eventually(lambda: healthy.power("node3", "status") == "off", 20, "node3 follows libvirt")
    result = cloud.get_nodes(["node3"]).poweroff()
    assert result.ok
    assert "already off" in result.records[0].output
    rec = cloud.recover(result)
    assert rec.ok
    assert "left off" in rec.records[0].output
    assert_off(healthy, virt, "node3")


@pytest.mark.parametrize("how", ["match-mac", "domains-map"])
def test_domain_found_when_its_name_is_not_the_fqdn(
    healthy: Lab, virt: Any, tmp_path: Path, how: str
) -> None:
    fqdn = "vm-two.example.test"
    dom = virt.lookupByName("node2")
    args: dict[str, Any] = (
        {"match": "mac"} if how == "match-mac" else {"domains": {fqdn: dom.UUIDString()}}
    )
    old = boot_id(healthy, "node2")
    path = renamed_config(healthy, tmp_path, "node2", fqdn, **args)
    with faultline.connect(config_filename=path) as cloud:
        result = cloud.get_nodes([fqdn]).poweroff()
        assert "domain node2 destroyed" in result.records[0].output
        assert_off(healthy, virt, "node2")
        assert cloud.recover(result).ok
    assert_back(healthy, virt, "node2", old)


def test_unmatched_node_fails_naming_node_domain_and_uri(
    healthy: Lab, virt: Any, uri: str, tmp_path: Path
) -> None:
    path = renamed_config(healthy, tmp_path, "node2", "vm-two.example.test", match="name")
    with faultline.connect(config_filename=path) as cloud, pytest.raises(ActionError) as failed:
        cloud.get_nodes(["vm-two.example.test"]).poweroff()
    message = str(failed.value)
    assert "vm-two.example.test" in message and uri in message
    assert "args.domains" in message  # how to fix it
    assert domain_on(virt, "node2")  # nothing else was touched
    assert healthy.power("node2", "status") == "on"


def test_human_api_through_libvirt(healthy: Lab, virt: Any, cloud: Any) -> None:
    result = faultline.human_api(cloud, "poweroff one node")
    (victim,) = [r.node for r in result.records]
    assert_off(healthy, virt, victim)
    assert cloud.recover(result).ok
    assert domain_on(virt, victim)
    old = boot_id(healthy, "node3")
    faultline.human_api(cloud, "reset node3 node")
    assert_back(healthy, virt, "node3", old)


# -- the backend's own verbs -----------------------------------------------------------------------


def test_snapshot_and_revert_on_the_test_driver(healthy: Lab, virt: Any, uri: str) -> None:
    node = target(healthy, "node1")
    old = boot_id(healthy, "node1")

    async def scenario() -> list[str]:
        power = backend(uri)
        try:
            said = [await power.snapshot(node, "faultline-before")]
            said.append(await power.snapshot(node, "faultline-before"))  # idempotent
            assert "faultline-before" in await power.snapshots(node)
            said.append(await power.power_off(node))
            assert_off(healthy, virt, "node1")
            said.append(await power.revert(node, "faultline-before"))
            with pytest.raises(PowerError, match="no snapshot 'nope'"):
                await power.revert(node, "nope")
            said.append(await power.delete_snapshot(node, "faultline-before"))
            said.append(await power.delete_snapshot(node, "faultline-before"))
            return said
        finally:
            await power.close()

    said = asyncio.run(scenario())
    assert "snapshot faultline-before taken" in said[0]
    assert "already has snapshot" in said[1]
    assert "reverted to snapshot faultline-before (running)" in said[3]
    assert "has no snapshot" in said[5]
    # The revert started the domain again, and the node with it.
    assert domain_on(virt, "node1")
    eventually(lambda: ssh_boot_id(healthy, "node1") not in (None, old), 30, "node1 is back")
    assert virt.lookupByName("node1").snapshotNum(0) == 0


def test_snapshot_action_is_deleted_again_on_rollback(healthy: Lab, virt: Any, cloud: Any) -> None:
    """os-faults' `snapshot` verb as a recorded action: rollback removes what it created."""
    result = cloud.get_nodes(["node2"]).snapshot("fl-gate")
    assert result.ok and "snapshot fl-gate taken" in result.records[0].output
    assert virt.lookupByName("node2").snapshotLookupByName("fl-gate", 0).getName() == "fl-gate"
    assert domain_on(virt, "node2")  # taken suspended, resumed after
    cloud.recover(result)
    assert virt.lookupByName("node2").snapshotNum(0) == 0


def test_revert_action_and_its_rollback(healthy: Lab, virt: Any, cloud: Any) -> None:
    """Revert node3's domain to a snapshot: an undo snapshot is taken first; rollback reverts
    to it (running, as before) and deletes it, leaving only the user's snapshot. Asserted on
    the domains: each revert's stop/start events make the lab's mirror power-cycle the lab
    node, which the test only waits out at the end."""
    dom = virt.lookupByName("node3")
    dom.snapshotCreateXML(
        "<domainsnapshot><name>fl-gold</name><domain><name>node3</name></domain></domainsnapshot>",
        0,
    )
    try:
        result = cloud.get_nodes(["node3"]).revert("fl-gold", resume=False)
        assert result.ok, result
        [record] = result.records
        assert "reverted to snapshot fl-gold" in record.output
        undo = record.identity["undoSnapshot"]
        assert sorted(s.getName() for s in dom.listAllSnapshots(0)) == sorted(["fl-gold", undo])

        cloud.recover(result)
        assert domain_on(virt, "node3")
        assert [s.getName() for s in dom.listAllSnapshots(0)] == ["fl-gold"]
    finally:
        dom.snapshotLookupByName("fl-gold", 0).delete(0)
    settled: list[str] = []

    def steady_on() -> bool:
        settled.append(healthy.power("node3", "status"))
        return settled[-20:] == ["on"] * 20  # two seconds without a power cycle

    eventually(steady_on, 60, "node3 steadily on")
    healthy.wait_ready("node3")


def test_snapshot_needs_a_backend_that_has_them(cloud: Any, tmp_path: Path) -> None:
    spec = FaultSpec(kind=FaultKind.POWER, action="revert", params={"name": "x; reboot"})
    with pytest.raises(ConfigError, match=r"params.name: revert needs a snapshot name"):
        cloud.act(spec, cloud.get_nodes(["node1"]))


def test_graceful_reboot_and_states(healthy: Lab, virt: Any, uri: str) -> None:
    node = target(healthy, "node2")
    old = boot_id(healthy, "node2")

    async def scenario() -> tuple[str, str, str]:
        power = backend(uri)
        try:
            said = await power.reboot(node)
            state = await power.state(node)
            detail = await power.domain_state(node)
            return said, state.value, detail
        finally:
            await power.close()

    said, state, detail = asyncio.run(scenario())
    assert "asked to reboot" in said
    assert (state, detail) == ("on", "running")
    eventually(lambda: ssh_boot_id(healthy, "node2") not in (None, old), 30, "node2 rebooted")
    assert domain_on(virt, "node2")


def test_bad_args_name_the_field(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"args\.uri"):
        backend("")
    with pytest.raises(ConfigError, match=r"args\.match"):
        backend(uri, match="serial")
    with pytest.raises(ConfigError, match=r"match: uuid needs"):
        backend(uri, match="uuid")
    with pytest.raises(ConfigError, match=r"args\.domains"):
        backend(uri, match="uuid", domains={"node1": "not-a-uuid"})
    with pytest.raises(ConfigError, match="no password in the URI") as failed:
        backend("qemu+tcp://admin:hunter2@127.0.0.1/system")
    assert "hunter2" not in str(failed.value)


def test_unreachable_libvirtd_error_hides_uri_secrets() -> None:
    secret = str(uuid.uuid4())
    power = backend(f"test+tcp://admin@127.0.0.1:1/default?keyfile=/keys/{secret}")

    async def scenario() -> None:
        try:
            await power.state(PowerTarget("node1", "10.0.0.1"))
        finally:
            await power.close()

    with pytest.raises(PowerError) as failed:
        asyncio.run(scenario())
    message = str(failed.value)
    assert "test+tcp://admin@127.0.0.1:1/default" in message
    assert secret not in message

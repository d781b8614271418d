"""Nova faults, discovery and Doctor's markHostDown against the lab's real Keystone and Nova.

Every assertion reads Nova through a connection of the test's own (`os_conn`), or looks at
the lab node itself: the service is forced down, tenants see host_status DOWN, the node is off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import faultline
from faultline.lab import Lab
from faultline.models.errors import FaultlineError
from lab_observe import eventually
from lab_support import recovering_cloud
from openstack_support import fake_server

pytestmark = pytest.mark.lab

COMPUTE = "nova-compute"


def lab_config(lab: Lab) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(lab.config_path.read_text())
    return data


def service(conn: Any, host: str) -> Any:
    [svc] = list(conn.compute.services(host=host, binary=COMPUTE))
    return svc


def host_status(conn: Any, server_id: str) -> str:
    return str(conn.compute.get_server(server_id).host_status)


@pytest.fixture
def cloud(os_lab: Lab, os_conn: Any, tmp_path: Path) -> Iterator[Any]:
    """The engine on the OpenStack lab; whatever a test leaves applied is recovered, and every
    compute service is up, enabled and not forced down again afterwards."""
    os_lab.reset_state()
    with recovering_cloud(os_lab.config_path, tmp_path) as the_cloud:
        yield the_cloud
    for svc in os_conn.compute.services(binary=COMPUTE):
        if svc.is_forced_down:
            os_conn.compute.update_service_forced_down(svc, svc.host, COMPUTE, False)
        if svc.status != "enabled":
            os_conn.compute.enable_service(svc, svc.host, COMPUTE)


@pytest.fixture
def server_on_node2(os_conn: Any) -> Iterator[str]:
    """A tenant's server on Nova host node2 (fake driver), deleted afterwards."""
    with fake_server(os_conn, "fl-test-node2", host="node2") as server:
        yield str(server.id)


def test_discovery_maps_nova_hosts_to_ssh_nodes(os_lab: Lab, os_conn: Any) -> None:
    data = lab_config(os_lab)
    data["discovery"] = {"openstack": {"controllers": False}}
    with faultline.connect(data) as cloud:
        nodes = {n.fqdn: n for n in cloud.get_nodes()}
        assert sorted(nodes) == ["node1", "node2", "node3"]
        for node in os_lab.nodes:
            assert nodes[node.name].ip == node.ip
            assert nodes[node.name].labels["role"] == "compute"
            assert nodes[node.name].labels["nova.nova-compute"] == "up"
        assert all(c.reachable for c in cloud.verify())  # the mapped addresses answer SSH
        # os-faults' "which nodes run this service" works on discovered nodes as on listed ones
        running = cloud.get_service("memcached").get_nodes()
        assert sorted(n.fqdn for n in running) == ["node1", "node2", "node3"]


def test_force_down_shows_host_down_and_rollback_brings_it_up(
    cloud: Any, os_conn: Any, server_on_node2: str
) -> None:
    assert host_status(os_conn, server_on_node2) == "UP"
    result = cloud.get_nodes(["node2"]).force_down()
    [record] = result.records
    assert service(os_conn, "node2").is_forced_down is True
    assert service(os_conn, "node2").state == "down"
    assert host_status(os_conn, server_on_node2) == "DOWN"
    assert record.observed["hostStatus"] == {"DOWN": 1}
    assert record.previous["forcedDown"] is False
    assert service(os_conn, "node1").is_forced_down is False  # only the selected host

    cloud.recover(result)
    assert service(os_conn, "node2").is_forced_down is False
    eventually(lambda: service(os_conn, "node2").state == "up", 15, "nova-compute up")
    assert host_status(os_conn, server_on_node2) == "UP"


def test_disable_shows_maintenance_and_enable_restores(
    cloud: Any, os_conn: Any, server_on_node2: str
) -> None:
    result = faultline.human_api(cloud, "disable nova-compute service on node node2")
    svc = service(os_conn, "node2")
    assert svc.status == "disabled" and "faultline" in (svc.disabled_reason or "")
    assert host_status(os_conn, server_on_node2) == "MAINTENANCE"
    cloud.recover(result)
    assert service(os_conn, "node2").status == "enabled"
    assert host_status(os_conn, server_on_node2) == "UP"


def test_a_service_disabled_before_stays_disabled(cloud: Any, os_conn: Any) -> None:
    svc = service(os_conn, "node3")
    os_conn.compute.disable_service(svc, "node3", COMPUTE, disabled_reason="operator's own")
    result = cloud.get_nodes(["node3"]).disable_service(reason="chaos")
    assert service(os_conn, "node3").status == "disabled"
    cloud.recover(result)
    after = service(os_conn, "node3")
    assert after.status == "disabled"
    assert after.disabled_reason == "operator's own"


def test_a_service_forced_down_before_stays_forced_down(cloud: Any, os_conn: Any) -> None:
    os_conn.compute.update_service_forced_down(service(os_conn, "node3"), "node3", COMPUTE, True)
    result = cloud.get_nodes(["node3"]).force_down()
    cloud.recover(result)
    assert service(os_conn, "node3").is_forced_down is True


def test_older_microversion_forces_down_by_host_and_binary(os_lab: Lab, os_conn: Any) -> None:
    """Clouds before 2.53 only have PUT /os-services/force-down (2.11)."""
    data = lab_config(os_lab)
    data["openstack"]["computeMicroversion"] = "2.11"
    with faultline.connect(data) as cloud:
        result = cloud.get_nodes(["node1"]).force_down()
        assert service(os_conn, "node1").is_forced_down is True
        cloud.recover(result)
        assert service(os_conn, "node1").is_forced_down is False


def test_poweroff_and_mark_it_down_keeps_doctors_order(
    cloud: Any, os_lab: Lab, os_conn: Any
) -> None:
    """Forced down while the node is off; on rollback, powered on first, then unset."""
    samples: list[tuple[str, bool]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            power = os_lab.power("node2", "status")
            samples.append((power, bool(service(os_conn, "node2").is_forced_down)))
            time.sleep(0.05)

    result = faultline.human_api(cloud, "poweroff node node2 and mark it down")
    assert os_lab.power("node2", "status") == "off"
    assert service(os_conn, "node2").is_forced_down is True
    [record] = result.records
    assert record.identity["markHostDown"] == {"host": "node2", "binary": COMPUTE}

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        cloud.recover(result)
        # The unset is recovery's last step: let the sampler see its result once (a
        # sample started before it may still say "forced down").
        eventually(lambda: any(not forced for _, forced in samples), 10, "a sample after unset")
    finally:
        stop.set()
        sampler.join()
    assert os_lab.power("node2", "status") == "on"
    assert service(os_conn, "node2").is_forced_down is False
    # Never "off and no longer forced down": the node is on again before the unset.
    assert ("off", True) in samples
    first_unset = next(i for i, (_, forced) in enumerate(samples) if not forced)
    assert all(power == "on" for power, _ in samples[first_unset:]), samples


def test_bad_password_is_a_clear_error_without_the_secret(os_lab: Lab, tmp_path: Path) -> None:
    clouds = yaml.safe_load(Path(lab_config(os_lab)["openstack"]["cloudsFile"]).read_text())
    auth = clouds["clouds"]["faultline-lab"]["auth"]
    wrong = "not-the-password-4711"
    password = tmp_path / "password"
    password.write_text(wrong)
    data = lab_config(os_lab)
    data["openstack"] = {
        "authUrl": auth["auth_url"],
        "username": auth["username"],
        "passwordFile": str(password),
        "projectName": auth["project_name"],
    }
    with faultline.connect(data) as cloud, pytest.raises(faultline.ActionError) as err:
        cloud.get_nodes(["node1"]).force_down()
    [node] = err.value.result.nodes
    assert "authentication failed (HTTP 401)" in (node.error or "")
    assert wrong not in str(err.value) and wrong not in (node.error or "")
    assert auth["password"] not in (node.error or "")


def test_unknown_nova_host_names_the_hosts_nova_knows(os_lab: Lab) -> None:
    data = lab_config(os_lab)
    for node in data["discovery"]["static"]["nodes"]:
        if node["fqdn"] == "node1":
            node["labels"] = {**node.get("labels", {}), "nova.host": "no-such-host"}
    with faultline.connect(data) as cloud, pytest.raises(faultline.ActionError) as err:
        cloud.get_nodes(["node1"]).force_down()
    [node] = err.value.result.nodes
    assert "Nova has no nova-compute service on host 'no-such-host'" in (node.error or "")
    assert "node1, node2, node3" in (node.error or "")


def test_unknown_cloud_names_the_field(os_lab: Lab) -> None:
    data = lab_config(os_lab)
    data["openstack"]["cloud"] = "no-such-cloud"
    data["discovery"]["openstack"] = {}
    with pytest.raises(FaultlineError, match=r"openstack.cloud 'no-such-cloud'"):
        faultline.connect(data)

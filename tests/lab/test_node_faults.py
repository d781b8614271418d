"""Node and network actions on real lab nodes, each undone and verified."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import faultline
from faultline.models.errors import ActionError
from faultline.models.faults import FaultKind, FaultSpec
from faultline.models.records import RecordPhase
from lab_observe import NODES, eventually, link, memcached_answers, ok, out, pids

pytestmark = pytest.mark.lab


def mgmt(lab: Any, name: str) -> str:
    return str(next(n for n in lab.nodes if n.name == name).mgmt_ip)


def boot_id(lab: Any, node: str) -> str:
    return out(lab, node, "cat /proc/sys/kernel/random/boot_id")


def test_disconnect_management_keeps_ssh_and_connect_restores(lab: Any, cloud: Any) -> None:
    node1 = cloud.get_nodes(["node1"])
    assert memcached_answers(lab, "node2", mgmt(lab, "node1"))
    result = node1.disconnect(network_name="management")
    assert link(lab, "node1", "eth1") == "DOWN"
    assert link(lab, "node2", "eth1") == "UP" and link(lab, "node3", "eth1") == "UP"
    assert not memcached_answers(lab, "node2", mgmt(lab, "node1"))
    assert memcached_answers(lab, "node2", mgmt(lab, "node3"))
    cloud.verify()  # the SSH path is another link: still reachable
    marker = result.records[0].identity["marker"]
    assert marker in out(lab, "node1", "ps -eo args")  # the dead-man's switch is armed
    cloud.recover(result)
    assert link(lab, "node1", "eth1") == "UP"
    eventually(lambda: memcached_answers(lab, "node2", mgmt(lab, "node1")), 5, "traffic back")
    assert marker not in out(lab, "node1", "ps -eo args")  # and disarmed


def test_disconnect_dead_mans_switch_reconnects_without_us(lab: Any, cloud: Any) -> None:
    spec = FaultSpec(
        kind=FaultKind.NETWORK, action="disconnect", target="management", params={"sec": 1}
    )
    result = cloud.act(spec, cloud.get_nodes(["node3"]))
    assert link(lab, "node3", "eth1") == "DOWN"
    eventually(lambda: link(lab, "node3", "eth1") == "UP", 5, "the node reconnects itself")
    cloud.recover(result)


def test_human_disconnect_for_seconds(lab: Any, cloud: Any) -> None:
    result = faultline.human_api(
        cloud, "disconnect management network on node2 node with memcached service for 1 second"
    )
    assert result.records[0].phase == RecordPhase.RECOVERED
    assert link(lab, "node2", "eth1") == "UP"


def test_reboot_one_node(lab: Any, cloud: Any) -> None:
    before = {n: boot_id(lab, n) for n in NODES}
    sshd_before = pids(lab, "node2", "sshd")
    result = cloud.get_nodes(["node2"]).reboot()
    assert result.ok
    eventually(lambda: boot_id(lab, "node2") not in ("", before["node2"]), 30, "node2 rebooted")
    assert boot_id(lab, "node1") == before["node1"]
    assert boot_id(lab, "node3") == before["node3"]
    cloud.recover(result)
    eventually(lambda: bool(pids(lab, "node2", "memcached")), 10, "services back")
    assert pids(lab, "node2", "sshd") != sshd_before
    cloud.verify()


def test_shutdown_recovered_through_the_power_backend(lab: Any, cloud: Any) -> None:
    """The lab's nodes have BMCs (ipmi_sim): recovery powers the node back on through it."""
    before = boot_id(lab, "node3")
    result = cloud.get_nodes(["node3"]).shutdown()
    assert result.ok  # the node stopped answering; its graceful shutdown ends in power off
    eventually(lambda: lab.power("node3", "status") == "off", 30, "node3 powered off")
    rec = cloud.recover(result)
    assert "through ipmi" in rec.records[0].output
    assert lab.power("node3", "status") == "on"
    assert boot_id(lab, "node3") not in ("", before)
    cloud.verify()


def test_shutdown_without_power_backend_says_how_to_recover(lab: Any, cloud: Any) -> None:
    data = yaml.safe_load(lab.config_path.read_text())
    data.pop("power")
    with faultline.connect(data) as bare:
        result = bare.get_nodes(["node2"]).shutdown()
        eventually(lambda: lab.power("node2", "status") == "off", 30, "node2 powered off")
        rec = bare.recover(result, raise_on_error=False)
        assert rec.nodes[0].phase == RecordPhase.RECOVER_FAILED
        assert "power it on" in (rec.nodes[0].error or "")
        lab.power("node2", "on")
        assert bare.recover(rec.records).ok


def oom_kills(control: Path) -> int:
    return int(re.findall(r"oom_kill (\d+)", control.read_text())[0])


def test_oom_kills_the_hog_and_spares_sshd(lab: Any, cloud: Any) -> None:
    node = next(n for n in lab.nodes if n.name == "node1")
    control = Path(node.cgroup_path) / "memory.oom_control"
    before = oom_kills(control)
    sshd = out(lab, "node1", "cat /run/sshd.pid")  # the listener, not per-session processes
    result = cloud.get_nodes(["node1"]).oom()
    after = oom_kills(control)
    assert after > before
    assert out(lab, "node1", "cat /run/sshd.pid") == sshd
    assert out(lab, "node1", f"ps -o comm= -p {sshd}") == "sshd"
    assert "killed by the kernel" in result.records[0].output
    cloud.recover(result)


def test_stress_cpu_runs_for_its_duration_and_recover_ends_it(lab: Any, cloud: Any) -> None:
    spec = FaultSpec(kind=FaultKind.NODE, action="stress", params={"target": "cpu", "sec": 60})
    result = cloud.act(spec, cloud.get_nodes(["node2"]))
    assert ok(lab, "node2", "pgrep stress-ng >/dev/null")
    assert not ok(lab, "node1", "pgrep stress-ng >/dev/null")
    cloud.recover(result)
    assert not ok(lab, "node2", "pgrep stress-ng >/dev/null")


def test_unreachable_node_is_reported_and_others_still_done(lab: Any, cloud: Any) -> None:
    """node9 has an address in the lab range where no host answers."""
    data = yaml.safe_load(lab.config_path.read_text())
    base = data["discovery"]["static"]["nodes"][0]["ip"].rsplit(".", 1)[0]
    data["discovery"]["static"]["nodes"].append({"fqdn": "node9", "ip": f"{base}.99"})
    data["ssh"]["connectTimeout"] = 1
    data["services"]["memcached"]["nodes"] = ["node1", "node2", "node9"]
    with faultline.connect(data) as wide:
        with pytest.raises(ActionError) as err:
            wide.get_service("memcached").kill()
        by_node = {n.fqdn: n for n in err.value.result.nodes}
        assert not by_node["node9"].ok and "cannot connect" in (by_node["node9"].error or "")
        assert by_node["node1"].ok and by_node["node2"].ok
        assert pids(lab, "node1", "memcached") == [] and pids(lab, "node2", "memcached") == []
        wide.recover(err.value.result, raise_on_error=False)
    assert pids(lab, "node1", "memcached") and pids(lab, "node2", "memcached")

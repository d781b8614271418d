"""Service actions on real lab nodes: the effect lands on the selected nodes only, and the
inverse restores it. Observed from outside through the node's namespaces, not over SSH."""

from __future__ import annotations

from typing import Any

import pytest

import faultline
from faultline.models.records import RecordPhase
from lab_observe import NODES, eventually, memcached_answers, out, pids, port_open, states

pytestmark = pytest.mark.lab


def others(node: str) -> list[str]:
    return [n for n in NODES if n != node]


def test_kill_one_node_then_recover(lab: Any, cloud: Any) -> None:
    before = {n: pids(lab, n, "memcached") for n in NODES}
    assert all(before.values())
    svc = cloud.get_service("memcached")
    target = svc.get_nodes().pick()
    (victim,) = target.get_fqdns()

    result = svc.kill(nodes=target)

    assert result.ok and [n.fqdn for n in result.nodes] == [victim]
    assert pids(lab, victim, "memcached") == []
    for n in others(victim):
        assert pids(lab, n, "memcached") == before[n]
    record = result.records[0]
    assert record.phase == RecordPhase.INJECTED
    assert record.previous["pids"] == before[victim]

    cloud.recover(result)
    assert pids(lab, victim, "memcached") not in ([], before[victim])
    assert record.phase == RecordPhase.RECOVERED


def test_recover_is_not_fooled_by_a_process_that_mentions_the_service(lab: Any, cloud: Any) -> None:
    """An admin tailing memcached's log while it is down: the init script, not `pgrep -f`,
    says whether memcached runs, so recovery still starts it."""
    svc = cloud.get_service("memcached")
    result = svc.kill(nodes=cloud.get_nodes(["node2"]))
    assert pids(lab, "node2", "memcached") == []
    tail = "tail -f /var/log/memcached.log </dev/null >/dev/null 2>&1 & echo $!"
    tail_pid = int(lab.exec("node2", tail, check=True).stdout)
    try:
        cloud.recover(result)
        assert pids(lab, "node2", "memcached")
        assert out(lab, "node2", "service memcached status >/dev/null; echo $?") == "0"
    finally:
        lab.exec("node2", f"kill {tail_pid}")


def test_terminate_and_start_back(lab: Any, cloud: Any) -> None:
    svc = cloud.get_service("redis")
    result = svc.terminate(nodes=cloud.get_nodes(["node2"]))
    assert out(lab, "node2", "service redis-server status >/dev/null; echo $?") != "0"
    assert pids(lab, "node2", "redis-server") == []
    assert pids(lab, "node1", "redis-server") and pids(lab, "node3", "redis-server")
    cloud.recover(result)
    assert out(lab, "node2", "service redis-server status >/dev/null; echo $?") == "0"


def test_start_restores_the_previous_stopped_state(lab: Any, cloud: Any) -> None:
    lab.exec("node3", "service memcached stop")
    assert pids(lab, "node3", "memcached") == []
    svc = cloud.get_service("memcached")
    result = svc.start(nodes=cloud.get_nodes(["node3"]))
    assert pids(lab, "node3", "memcached")
    assert result.records[0].previous["running"] is False
    cloud.recover(result)
    assert pids(lab, "node3", "memcached") == []


def test_restart_changes_pids_on_selected_nodes_only(lab: Any, cloud: Any) -> None:
    before = {n: pids(lab, n, "memcached") for n in NODES}
    cloud.get_service("memcached").restart(nodes=cloud.get_nodes(["node1", "node3"]))
    after = {n: pids(lab, n, "memcached") for n in NODES}
    assert after["node1"] and after["node1"] != before["node1"]
    assert after["node3"] and after["node3"] != before["node3"]
    assert after["node2"] == before["node2"]


def test_freeze_stops_the_process_and_recover_thaws_it(lab: Any, cloud: Any) -> None:
    node2_mgmt = lab_mgmt_ip(lab, "node2")
    result = cloud.get_service("memcached").freeze(nodes=cloud.get_nodes(["node2"]))
    assert all(s.startswith("T") for s in states(lab, "node2", "memcached"))
    assert not any(s.startswith("T") for s in states(lab, "node1", "memcached"))
    assert not memcached_answers(lab, "node1", node2_mgmt)
    cloud.recover(result)
    assert not any(s.startswith("T") for s in states(lab, "node2", "memcached"))
    assert memcached_answers(lab, "node1", node2_mgmt)


def test_freeze_for_seconds_thaws_by_itself_on_the_node(lab: Any, cloud: Any) -> None:
    """The on-node timer unfreezes even though nobody calls recover."""
    from faultline.models.faults import FaultKind, FaultSpec

    spec = FaultSpec(kind=FaultKind.SERVICE, action="freeze", target="memcached", params={"sec": 1})
    result = cloud.act(spec, cloud.get_nodes(["node1"]))
    assert all(s.startswith("T") for s in states(lab, "node1", "memcached"))
    eventually(
        lambda: not any(s.startswith("T") for s in states(lab, "node1", "memcached")),
        timeout=5,
        what="memcached thawed by the node's own timer",
    )
    cloud.recover(result)


def test_freeze_sec_holds_then_rolls_back(lab: Any, cloud: Any) -> None:
    result = cloud.get_service("memcached").freeze(nodes=cloud.get_nodes(["node3"]), sec=1)
    assert result.records[0].phase == RecordPhase.RECOVERED
    assert not any(s.startswith("T") for s in states(lab, "node3", "memcached"))


def lab_mgmt_ip(lab: Any, name: str) -> str:
    return str(next(n for n in lab.nodes if n.name == name).mgmt_ip)


def test_unplug_drops_traffic_and_plug_restores(lab: Any, cloud: Any) -> None:
    ip1 = lab_mgmt_ip(lab, "node1")
    ip3 = lab_mgmt_ip(lab, "node3")
    assert port_open(lab, "node2", ip1, 11211)
    result = cloud.get_service("memcached").unplug(nodes=cloud.get_nodes(["node1"]))
    rules = out(lab, "node1", "iptables -S INPUT")
    assert f"faultline:{result.injection_id}" in rules
    assert not port_open(lab, "node2", ip1, 11211)
    assert port_open(lab, "node2", ip3, 11211)
    assert "faultline" not in out(lab, "node3", "iptables -S INPUT")
    cloud.recover(result)
    assert "faultline" not in out(lab, "node1", "iptables -S INPUT")
    assert port_open(lab, "node2", ip1, 11211)


def test_two_unplugs_never_remove_each_others_rule(lab: Any, cloud: Any) -> None:
    svc = cloud.get_service("memcached")
    node1 = cloud.get_nodes(["node1"])
    first = svc.unplug(nodes=node1)
    second = svc.unplug(nodes=node1)
    assert first.injection_id != second.injection_id
    cloud.recover(first)
    rules = out(lab, "node1", "iptables -S INPUT")
    assert f"faultline:{first.injection_id}" not in rules
    assert f"faultline:{second.injection_id}" in rules
    assert not port_open(lab, "node2", lab_mgmt_ip(lab, "node1"), 11211)
    cloud.recover(second)
    assert "faultline" not in out(lab, "node1", "iptables -S INPUT")


def test_osfaults_style_plug_removes_the_last_unplug(lab: Any, cloud: Any) -> None:
    svc = cloud.get_service("memcached")
    svc.unplug(nodes=cloud.get_nodes(["node2"]))
    assert "faultline" in out(lab, "node2", "iptables -S INPUT")
    svc.plug(nodes=cloud.get_nodes(["node2"]))
    assert "faultline" not in out(lab, "node2", "iptables -S INPUT")


def test_human_api_kill_on_named_node(lab: Any, cloud: Any) -> None:
    before = pids(lab, "node1", "memcached")
    result = faultline.human_api(cloud, "kill memcached service on node2 node")
    assert pids(lab, "node2", "memcached") == []
    assert pids(lab, "node1", "memcached") == before
    cloud.recover(result)
    assert pids(lab, "node2", "memcached")


def test_human_api_terminate_for_seconds_rolls_back(lab: Any, cloud: Any) -> None:
    faultline.human_api(cloud, "terminate redis service on 2 nodes for 1 second")
    eventually(lambda: all(pids(lab, n, "redis-server") for n in NODES), 5, "redis back")


def test_os_faults_import_alias_works(lab: Any) -> None:
    import faultline as os_faults

    cloud = os_faults.connect(config_filename=str(lab.config_path))
    try:
        cloud.verify()
        nodes = cloud.get_service(name="memcached").get_nodes()
        assert nodes.get_fqdns() == list(NODES)
        os_faults.human_api(cloud, "restart memcached service on one node")
    finally:
        cloud.close()

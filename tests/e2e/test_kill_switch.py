"""Kill switches wider than one target: a namespace's ConfigMap, the cluster's (the same
ConfigMap in the operator's own namespace), and the operator's `--kill-switch` flag.

The operator watches `default` only and lives (POD_NAMESPACE) in `faultline-system`, as the
chart runs it with watchNamespaces: the cluster switch is the ConfigMap kopf does not watch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_operator import condition, injection, status, wait_phase, wait_status
from test_schedule import (
    EVERY,
    children,
    first_child,
    number,
    sched_status,
    schedule,
    wait_for,
)

from faultline.lab.kubeapi import KubeAPI
from lab_observe import eventually, link, pids

pytestmark = pytest.mark.lab

OPERATOR_NS = "faultline-system"
SWITCH = "faultline-kill-switch"


@pytest.fixture
def operator(operator: Any, kube: KubeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The e2e operator, restarted knowing its own namespace as the chart's Deployment
    tells it (POD_NAMESPACE)."""
    kube.ensure_namespace(OPERATOR_NS)
    monkeypatch.setenv("POD_NAMESPACE", OPERATOR_NS)
    monkeypatch.delenv("FAULTLINE_KILL_SWITCH", raising=False)
    operator.stop()
    operator.start()
    yield operator


@pytest.fixture
def switches(kubectl: Any) -> Iterator[None]:
    """Whatever a test leaves engaged is lifted afterwards."""
    yield
    for ns in ("default", OPERATOR_NS):
        kubectl("-n", ns, "delete", "configmap", SWITCH, "--ignore-not-found")


def cut_node1(name: str) -> dict[str, Any]:
    return injection(
        name,
        fault={"kind": "network", "action": "disconnect", "target": "management"},
        selector={"mode": "all", "fqdns": ["node1"]},
        duration="5m",
    )


def events(kubectl: Any, name: str, ns: str = "default") -> str:
    done = kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}")
    return str(done.stdout)


def pending_because(kube: KubeAPI, name: str, reason: str) -> dict[str, Any]:
    return wait_status(
        kube, name, lambda s: s.get("phase") == "Pending" and s.get("reason") == reason, 15, reason
    )


def assert_aborted_by(kube: KubeAPI, name: str, reason: str, *words: str) -> dict[str, Any]:
    st = wait_phase(kube, name, "Aborted", timeout=30)
    assert st["reason"] == "KillSwitch"
    paused = condition(st, "Paused")
    assert paused["status"] == "True" and paused["reason"] == reason, paused
    for word in words:
        assert word in paused["message"] and word in st["message"], (word, paused)
    assert condition(st, "AllRecovered")["status"] == "True"
    return st


def test_namespace_switch_aborts_blocks_and_lifts(
    e2e: Any, switches: None, kube: KubeAPI, kubectl: Any, lab: Any
) -> None:
    kubectl.apply(cut_node1("ns-cut"))
    wait_phase(kube, "ns-cut", "Active")
    assert link(lab, "node1") == "DOWN"
    done = kubectl(
        "create", "configmap", SWITCH, "--from-literal=engaged=true", "--from-literal=reason=inc 42"
    )
    assert done.returncode == 0, done.stderr
    assert_aborted_by(kube, "ns-cut", "NamespaceKillSwitch", f"default/{SWITCH}", "inc 42")
    assert link(lab, "node1") == "UP"
    eventually(lambda: "kill switch" in events(kubectl, "ns-cut"), 10, "the Aborted Event")
    eventually(lambda: "KillSwitchEngaged" in events(kubectl, SWITCH), 10, "Event on the switch")

    kubectl.apply(injection("ns-blocked", command="kill memcached service on node2 node"))
    st = pending_because(kube, "ns-blocked", "NamespaceKillSwitch")
    assert "inc 42" in st["message"]
    assert pids(lab, "node2", "memcached")
    assert "NamespaceKillSwitch" in events(kubectl, "ns-blocked")

    # Kept, but flipped off: lifted.
    merge = '{"data":{"engaged":"false"}}'
    done = kubectl("patch", "configmap", SWITCH, "--type", "merge", "-p", merge)
    assert done.returncode == 0, done.stderr
    wait_phase(kube, "ns-blocked", "Active", timeout=30)
    eventually(lambda: pids(lab, "node2", "memcached") == [], 5, "memcached killed")
    eventually(lambda: "KillSwitchLifted" in events(kubectl, SWITCH), 10, "lifted Event")
    assert status(kube, "ns-cut")["phase"] == "Aborted"  # aborted stays aborted


def test_cluster_switch_in_the_operator_namespace(
    e2e: Any, switches: None, kube: KubeAPI, kubectl: Any, lab: Any
) -> None:
    kubectl.apply(cut_node1("cl-cut"))
    wait_phase(kube, "cl-cut", "Active")
    assert link(lab, "node1") == "DOWN"
    # In a hurry: no data at all engages it.
    done = kubectl("-n", OPERATOR_NS, "create", "configmap", SWITCH)
    assert done.returncode == 0, done.stderr
    assert_aborted_by(kube, "cl-cut", "ClusterKillSwitch", f"{OPERATOR_NS}/{SWITCH}")
    assert link(lab, "node1") == "UP"

    kubectl.apply(injection("cl-blocked", command="kill memcached service on node2 node"))
    pending_because(kube, "cl-blocked", "ClusterKillSwitch")
    assert pids(lab, "node2", "memcached")

    done = kubectl("-n", OPERATOR_NS, "delete", "configmap", SWITCH)
    assert done.returncode == 0, done.stderr
    wait_phase(kube, "cl-blocked", "Active", timeout=30)
    eventually(lambda: pids(lab, "node2", "memcached") == [], 5, "memcached killed")


def test_operator_flag(
    e2e: Any,
    kube: KubeAPI,
    kubectl: Any,
    lab: Any,
    operator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kubectl.apply(cut_node1("op-cut"))
    wait_phase(kube, "op-cut", "Active")
    assert link(lab, "node1") == "DOWN"
    # Restarted with the switch (the chart's killSwitch: true): the fault it finds is undone.
    operator.stop()
    assert link(lab, "node1") == "DOWN"  # a stopped operator leaves the fault as status says
    monkeypatch.setenv("FAULTLINE_KILL_SWITCH", "true")
    operator.start()
    assert_aborted_by(kube, "op-cut", "OperatorKillSwitch", "--kill-switch")
    assert link(lab, "node1") == "UP"

    kubectl.apply(injection("op-blocked", command="kill memcached service on node2 node"))
    pending_because(kube, "op-blocked", "OperatorKillSwitch")
    assert pids(lab, "node2", "memcached")

    operator.stop()
    monkeypatch.delenv("FAULTLINE_KILL_SWITCH")
    operator.start()
    wait_phase(kube, "op-blocked", "Active", timeout=30)
    eventually(lambda: pids(lab, "node2", "memcached") == [], 5, "memcached killed")


def test_a_schedule_creates_no_runs_while_engaged(
    e2e: Any, switches: None, schedules: None, kube: KubeAPI, kubectl: Any
) -> None:
    done = kubectl("create", "configmap", SWITCH, "--from-literal=reason=freeze week")
    assert done.returncode == 0, done.stderr
    dry = {"command": "kill memcached service on node1 node", "dryRun": True}
    kubectl.apply(schedule("held", dry, concurrencyPolicy="Allow", startingDeadlineSeconds=2))

    def skipped() -> dict[str, Any] | None:
        last = sched_status(kube, "held").get("lastSkipped") or {}
        return last if last.get("reason") == "KillSwitch" else None

    last = wait_for(skipped, EVERY + 10, "a run skipped for the kill switch")
    assert "freeze week" in last["message"]
    first_held = last["scheduledTime"]
    wait_for(lambda: (skipped() or {}).get("scheduledTime") != first_held, EVERY + 5, "next run")
    assert children(kube, "held") == {}
    assert "lastScheduleTime" not in sched_status(kube, "held")
    assert "KillSwitch" in events(kubectl, "held")

    lifted_at = time.time()
    done = kubectl("delete", "configmap", SWITCH)
    assert done.returncode == 0, done.stderr
    name = first_child(kube, "held")
    # The held run is past its 2 s deadline by now or starts within it, never both: the
    # first child is for a time after the switch was lifted, or at most 2 s before.
    assert number(name) >= lifted_at - 2 - 1, (name, lifted_at)

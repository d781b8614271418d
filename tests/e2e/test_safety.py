"""The target's safety limits: refused before anything is touched; the kill switch."""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_support import lab_target_manifest
from test_operator import injection, status, wait_phase, wait_status
from test_schedule import EVERY, children, first_child, sched_status, schedule, wait_for

from lab_observe import NODES, eventually, link, pids

pytestmark = pytest.mark.lab


def guarded(lab: Any, name: str, **safety: Any) -> dict[str, Any]:
    manifest = lab_target_manifest(lab, name)
    manifest["spec"]["safety"] = safety
    return manifest


def on(target: str, name: str, **spec: Any) -> dict[str, Any]:
    manifest = injection(name, **spec)
    manifest["spec"]["targetRef"] = {"name": target}
    return manifest


def test_blast_radius_refused_before_touching(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    kubectl.apply(guarded(lab, "small", maxNodes=2))
    before = {n: pids(lab, n, "memcached") for n in NODES}
    kubectl.apply(on("small", "too-wide", command="kill memcached service on all nodes"))
    st = wait_phase(kube, "too-wide", "Failed")
    assert st["reason"] == "SafetyLimit" and "maxNodes allows 2" in st["message"]
    assert not st.get("records")
    assert {n: pids(lab, n, "memcached") for n in NODES} == before
    kubectl.apply(on("small", "too-many-percent", command="kill memcached service on 70% of nodes"))
    kubectl.apply(guarded(lab, "small", maxPercent=50))
    st = wait_phase(kube, "too-many-percent", "Failed")
    assert "maxPercent" in st["message"] or "maxNodes" in st["message"]
    kubectl("delete", "faulttarget", "small")


def test_allowed_actions_and_protected_nodes(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    kubectl.apply(
        guarded(
            lab,
            "careful",
            allowedActions=["restart", "service.kill"],
            protectedNodes=["node1", "node2"],
        )
    )
    kubectl.apply(on("careful", "no-reboots", command="reboot one node"))
    st = wait_phase(kube, "no-reboots", "Failed")
    assert "allowedActions" in st["message"]
    kubectl.apply(on("careful", "named-protected", command="kill memcached service on node1 node"))
    st = wait_phase(kube, "named-protected", "Failed")
    assert "node1" in st["message"] and "protected" in st["message"]
    kubectl.apply(
        on("careful", "any-one", command="kill memcached service on one node", duration="2s")
    )
    st = wait_phase(kube, "any-one", "Active")
    assert [r["node"] for r in st["records"]] == ["node3"]  # the only unprotected node
    wait_phase(kube, "any-one", "Completed")
    kubectl("delete", "faulttarget", "careful")


def test_kill_switch_aborts_and_blocks(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    kubectl.apply(guarded(lab, "switched"))
    kubectl.apply(
        on(
            "switched",
            "cut",
            fault={"kind": "network", "action": "disconnect", "target": "management"},
            selector={"mode": "all", "fqdns": ["node1"]},
            duration="5m",
        )
    )
    wait_phase(kube, "cut", "Active")
    assert link(lab, "node1") == "DOWN"
    kubectl.apply(guarded(lab, "switched", paused=True))
    st = wait_phase(kube, "cut", "Aborted", timeout=30)
    assert st["reason"] == "KillSwitch"
    assert link(lab, "node1") == "UP"
    kubectl.apply(on("switched", "blocked", command="kill memcached service on node2 node"))
    st = wait_status(kube, "blocked", lambda s: s.get("reason") == "TargetPaused", 15, "blocked")
    assert st["phase"] == "Pending" and pids(lab, "node2", "memcached")
    kubectl.apply(guarded(lab, "switched", paused=False))
    wait_phase(kube, "blocked", "Active", timeout=30)
    eventually(lambda: pids(lab, "node2", "memcached") == [], 5, "memcached killed")
    kubectl("delete", "faultinjection", "blocked", "--wait=true", "--timeout=60s")
    assert status(kube, "blocked") == {}
    kubectl("delete", "faulttarget", "switched")


def test_stop_condition_aborts_and_recovers(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    """The probe watches node1's web container; taking it down aborts the fault on node2."""
    url = f"http://{lab.node('node1').ip}:8080/"
    kubectl.apply(
        injection(
            "probed",
            command="kill memcached service on node2 node",
            duration="5m",
            stopConditions=[
                {
                    "name": "web-on-node1",
                    "httpGet": {"url": url},
                    "intervalSeconds": 0.5,
                    "failureThreshold": 2,
                }
            ],
        )
    )
    wait_phase(kube, "probed", "Active")
    assert pids(lab, "node2", "memcached") == []
    time.sleep(1.5)  # several healthy probes: nothing fires while the service answers
    assert status(kube, "probed")["phase"] == "Active"
    lab.exec("node1", "podman stop -t 1 web")
    st = wait_phase(kube, "probed", "Aborted", timeout=30)
    assert st["reason"] == "StopCondition"
    stopped = next(c for c in st["conditions"] if c["type"] == "Stopped")
    assert "web-on-node1" in stopped["message"] and url in stopped["message"]
    assert pids(lab, "node2", "memcached")


def test_a_paused_target_holds_its_schedules(
    e2e: Any, schedules: None, kube: Any, kubectl: Any, lab: Any
) -> None:
    kubectl.apply(guarded(lab, "resting", paused=True))
    template = {"command": "kill memcached service on node1 node", "dryRun": True}
    manifest = schedule("resting-runs", template, concurrencyPolicy="Allow")
    manifest["spec"]["template"]["spec"]["targetRef"] = {"name": "resting"}
    kubectl.apply(manifest)

    def skipped() -> dict[str, Any] | None:
        last = sched_status(kube, "resting-runs").get("lastSkipped") or {}
        return last if last.get("reason") == "TargetPaused" else None

    last = wait_for(skipped, EVERY + 15, "a run held by the paused target")
    assert "FaultTarget resting: safety.paused" in last["message"]
    assert children(kube, "resting-runs") == {}
    kubectl.apply(guarded(lab, "resting", paused=False))
    first_child(kube, "resting-runs", timeout=EVERY + 15)
    kubectl("delete", "faultschedule", "resting-runs", "--wait=true", "--timeout=60s")
    kubectl("delete", "faulttarget", "resting")

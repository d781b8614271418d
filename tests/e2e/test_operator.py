"""The operator end to end: kubectl apply -> the fault lands -> status -> rollback.

Every assertion about the fault is made on the lab nodes themselves (pids, link state),
every assertion about the operator on the objects in the Kubernetes API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import yaml
from e2e_support import lab_target_manifest

from lab_observe import NODES, eventually, link, pids

pytestmark = pytest.mark.lab

API = "faultline.dev/v1alpha1"
NS = "default"


def injection(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FaultInjection",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetRef": {"name": "lab"}, **spec},
    }


def get(kube: Any, name: str) -> dict[str, Any] | None:
    obj: dict[str, Any] | None = kube.get(API, "FaultInjection", name, NS)
    return obj


def status(kube: Any, name: str) -> dict[str, Any]:
    obj = get(kube, name)
    return dict((obj or {}).get("status") or {})


def wait_status(
    kube: Any,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
    what: str = "",
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = status(kube, name)
        if check(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"{name}: timed out waiting for {what}; status: {last}")


def wait_phase(kube: Any, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    return wait_status(kube, name, lambda s: s.get("phase") == phase, timeout, f"phase {phase}")


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == type_), {})


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_target_status_reports_nodes(e2e: Any, kube: Any) -> None:
    def ready(obj: dict[str, Any] | None) -> bool:
        conds = ((obj or {}).get("status") or {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    eventually(lambda: ready(kube.get(API, "FaultTarget", "lab", NS)), 30, "target Ready")
    st = kube.get(API, "FaultTarget", "lab", NS)["status"]
    assert [n["fqdn"] for n in st["nodes"]] == list(NODES)
    assert all(n["reachable"] for n in st["nodes"])
    assert all("service:memcached" in n["services"] for n in st["nodes"])


def test_kill_memcached_on_one_node_then_expiry(
    e2e: Any, kube: Any, kubectl: Any, lab: Any, operator: Any
) -> None:
    kubectl.apply(
        injection("kill-one", command="kill memcached service on one node", duration="4s")
    )
    st = wait_phase(kube, "kill-one", "Active")
    (record,) = st["records"]
    victim = record["node"]
    assert record["phase"] == "Injected"
    assert pids(lab, victim, "memcached") == []
    for other in NODES:
        if other != victim:
            assert pids(lab, other, "memcached")
    assert (when(st["expiresAt"]) - when(st["startedAt"])).total_seconds() == 4
    assert condition(st, "AllInjected")["status"] == "True"
    done = wait_phase(kube, "kill-one", "Completed", timeout=30)
    assert done["records"][0]["phase"] == "Recovered"
    assert when(done["completedAt"]) >= when(done["expiresAt"])
    assert all(pids(lab, n, "memcached") for n in NODES)
    assert condition(done, "AllRecovered")["status"] == "True"
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=kill-one")
    assert "Injecting" in events.stdout and "Completed" in events.stdout
    scraped = operator.metrics()
    assert 'faultline_actions_total{action="kill",kind="service",result="ok"} 1.0' in scraped
    assert 'faultline_injections{phase="Completed"} 1.0' in scraped
    assert 'faultline_recoveries_total{action="kill",kind="service",result="ok"} 1.0' in scraped


def test_network_disconnect_structured(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    kubectl.apply(
        injection(
            "cut-mgmt",
            fault={"kind": "network", "action": "disconnect", "target": "management"},
            selector={"mode": "all", "fqdns": ["node2"]},
            duration="3s",
        )
    )
    wait_phase(kube, "cut-mgmt", "Active")
    assert link(lab, "node2") == "DOWN"
    assert link(lab, "node1") == "UP" and link(lab, "node3") == "UP"
    wait_phase(kube, "cut-mgmt", "Completed")
    assert link(lab, "node2") == "UP"


def test_delete_while_active_recovers_then_goes(
    e2e: Any, kube: Any, kubectl: Any, lab: Any
) -> None:
    kubectl.apply(
        injection("long-kill", command="kill redis service on node3 node", duration="10m")
    )
    wait_phase(kube, "long-kill", "Active")
    assert pids(lab, "node3", "redis-server") == []
    done = kubectl("delete", "faultinjection", "long-kill", "--wait=true", "--timeout=60s")
    assert done.returncode == 0, done.stderr
    assert get(kube, "long-kill") is None
    assert pids(lab, "node3", "redis-server")


def test_second_injection_waits_for_the_node(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    kubectl.apply(injection("first", command="kill memcached service on node1 node", duration="4s"))
    wait_phase(kube, "first", "Active")
    kubectl.apply(
        injection("second", command="terminate memcached service on node1 node", duration="2s")
    )
    st = wait_status(kube, "second", lambda s: s.get("reason") == "WaitingForNode", 15, "waiting")
    assert st["phase"] == "Pending" and "default/first" in st["message"]
    wait_phase(kube, "first", "Completed")
    wait_phase(kube, "second", "Active", timeout=30)
    wait_phase(kube, "second", "Completed", timeout=30)
    assert pids(lab, "node1", "memcached")


def test_overlap_fail_policy(e2e: Any, kube: Any, kubectl: Any) -> None:
    kubectl.apply(
        injection("holder", command="kill memcached service on node2 node", duration="6s")
    )
    wait_phase(kube, "holder", "Active")
    kubectl.apply(
        injection("impatient", command="kill memcached service on node2 node", overlap="Fail")
    )
    st = wait_phase(kube, "impatient", "Failed")
    assert st["reason"] == "NodeBusy"


def test_bad_command_names_the_word(e2e: Any, kube: Any, kubectl: Any) -> None:
    kubectl.apply(injection("typo", command="kil memcached service on one node"))
    st = wait_phase(kube, "typo", "Failed")
    cond = condition(st, "Selected")
    assert cond["status"] == "False" and cond["reason"] == "InvalidCommand"
    assert "'kil'" in cond["message"]


def test_unknown_service_fails_with_condition(e2e: Any, kube: Any, kubectl: Any) -> None:
    kubectl.apply(injection("nosuch", command="kill nova-api service on one node"))
    st = wait_phase(kube, "nosuch", "Failed")
    assert "nova-api" in condition(st, "Selected")["message"]


def test_schema_rejects_bad_selector(e2e: Any, kubectl: Any) -> None:
    bad = injection(
        "bad-selector",
        fault={"kind": "service", "action": "kill", "target": "memcached"},
        selector={"mode": "some"},
    )
    done = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad))
    assert done.returncode != 0
    assert "mode" in done.stderr


def test_missing_target_waits_then_proceeds(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    spec = {"command": "restart redis service on node2 node", "targetRef": {"name": "later"}}
    manifest = injection("orphan")
    manifest["spec"] = spec
    kubectl.apply(manifest)
    st = wait_status(kube, "orphan", lambda s: s.get("reason") == "TargetNotReady", 15, "reason")
    assert "later" in st["message"]
    kubectl.apply(lab_target_manifest(lab, "later"))
    wait_phase(kube, "orphan", "Active", timeout=30)
    kubectl("delete", "faultinjection", "orphan", "--wait=true", "--timeout=60s")
    kubectl("delete", "faulttarget", "later")


def test_pause_recovers_and_unpause_reinjects(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    kubectl.apply(
        injection("pausable", command="kill memcached service on node3 node", duration="30s")
    )
    st = wait_phase(kube, "pausable", "Active")
    expires = st["expiresAt"]
    assert pids(lab, "node3", "memcached") == []
    kubectl("annotate", "faultinjection", "pausable", "faultline.dev/paused=true")
    wait_status(
        kube, "pausable", lambda s: condition(s, "Paused").get("status") == "True", 15, "paused"
    )
    eventually(lambda: bool(pids(lab, "node3", "memcached")), 10, "memcached back while paused")
    kubectl("annotate", "faultinjection", "pausable", "faultline.dev/paused-", "--overwrite")
    wait_status(
        kube, "pausable", lambda s: condition(s, "Paused").get("status") == "False", 15, "resumed"
    )
    eventually(lambda: pids(lab, "node3", "memcached") == [], 10, "memcached killed again")
    assert status(kube, "pausable")["expiresAt"] == expires


def test_dry_run_touches_nothing(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    before = {n: pids(lab, n, "memcached") for n in NODES}
    kubectl.apply(injection("dry", command="kill memcached service on all nodes", dryRun=True))
    st = wait_phase(kube, "dry", "Completed")
    assert st["reason"] == "DryRun" and "node1, node2, node3" in st["message"]
    assert {n: pids(lab, n, "memcached") for n in NODES} == before


def test_sigkill_mid_injection_and_mid_recovery(
    e2e: Any, kube: Any, kubectl: Any, lab: Any, operator: Any
) -> None:
    """redis' init script takes about a second to stop and to start: time to kill us."""
    kubectl.apply(
        injection("crashy", command="terminate redis service on all nodes", duration="3s")
    )
    wait_status(
        kube,
        "crashy",
        lambda s: s.get("phase") == "Injecting" and bool(s.get("records")),
        15,
        "injecting",
    )
    operator.kill()
    st = status(kube, "crashy")
    assert st["phase"] == "Injecting"  # the intent is recorded; the fault may be half-applied
    operator.start()
    wait_phase(kube, "crashy", "Recovering", timeout=40)
    operator.kill()
    operator.start()
    done = wait_phase(kube, "crashy", "Completed", timeout=60)
    assert all(r["phase"] == "Recovered" for r in done["records"])
    assert all(pids(lab, n, "redis-server") for n in NODES)


def test_forced_release_is_audited(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    """The target vanishes, so recovery cannot run; an operator annotates force-release."""
    kubectl.apply(lab_target_manifest(lab, "doomed"))
    spec = {"command": "kill memcached service on node1 node", "targetRef": {"name": "doomed"}}
    manifest = injection("stuck")
    manifest["spec"] = spec
    kubectl.apply(manifest)
    wait_phase(kube, "stuck", "Active")
    kubectl("delete", "faulttarget", "doomed")
    kubectl("delete", "faultinjection", "stuck", "--wait=false")
    time.sleep(1)
    assert get(kube, "stuck") is not None  # held by its finalizer: recovery keeps failing
    kubectl("annotate", "faultinjection", "stuck", "faultline.dev/force-release=true")
    eventually(lambda: get(kube, "stuck") is None, 30, "released")
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=stuck")
    assert "ForcedRelease" in events.stdout


def test_ipmi_poweroff_then_expiry(e2e: Any, kube: Any, kubectl: Any, lab: Any) -> None:
    """Through the node's BMC (ipmi_sim), with its password from a Secret."""
    before = lab.exec("node2", "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    kubectl.apply(
        injection(
            "poweroff-ipmi",
            fault={"kind": "power", "action": "poweroff"},
            selector={"mode": "all", "fqdns": ["node2"]},
            duration="3s",
        )
    )
    st = wait_phase(kube, "poweroff-ipmi", "Active", timeout=30)
    assert st["records"][0]["identity"]["backend"] == "ipmi"
    assert lab.power("node2", "status") == "off"
    assert lab.power("node1", "status") == "on"
    wait_phase(kube, "poweroff-ipmi", "Completed", timeout=60)
    assert lab.power("node2", "status") == "on"
    after = lab.exec("node2", "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    assert after not in ("", before)

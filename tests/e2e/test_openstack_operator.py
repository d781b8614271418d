"""The operator against the OpenStack lab: Doctor's markHostDown and a Nova fault, applied
with kubectl, seen on the lab node (power) and in the real Nova (through the test's own
openstacksdk connection), undone on expiry and on delete."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from e2e_support import NAMESPACE, lab_secrets, lab_target_manifest, secret

from faultline.lab import Lab

pytestmark = pytest.mark.lab

API = "faultline.dev/v1alpha1"
TARGET = "oslab"


def compute(conn: Any, host: str) -> Any:
    [svc] = list(conn.compute.services(host=host, binary="nova-compute"))
    return svc


def status(kube: Any, name: str) -> dict[str, Any]:
    obj = kube.get(API, "FaultInjection", name, NAMESPACE)
    return dict((obj or {}).get("status") or {})


def wait_for(check: Callable[[], bool], timeout: float, what: str, kube: Any, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; status: {status(kube, name)}")


def injection(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FaultInjection",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"targetRef": {"name": TARGET}, **spec},
    }


@pytest.fixture
def os_target(os_lab: Lab, kube: Any, kubectl: Any, operator: Any) -> Iterator[str]:
    """The OpenStack lab as a FaultTarget: SSH, BMC and clouds.yaml from Secrets."""
    os_lab.reset_state()
    for manifest in lab_secrets(os_lab, secrets=TARGET):
        kubectl.apply(manifest)
    manifest = lab_target_manifest(os_lab, TARGET, secrets=TARGET)
    section = manifest["spec"].pop("openstack")
    clouds = open(section["cloudsFile"], "rb").read()  # noqa: SIM115 (a one-off read)
    kubectl.apply(secret(f"{TARGET}-clouds", {"clouds.yaml": clouds}))
    manifest["spec"]["openstack"] = {
        "cloud": section["cloud"],
        "cloudsSecret": {"name": f"{TARGET}-clouds", "key": "clouds.yaml"},
    }
    kubectl.apply(manifest)
    yield TARGET
    kind = (API, "FaultInjection")
    for obj in kube.list(*kind, NAMESPACE):
        if obj["spec"]["targetRef"]["name"] == TARGET:
            kube.delete(*kind, obj["metadata"]["name"], NAMESPACE)


def test_poweroff_with_mark_host_down_then_expiry(
    os_target: str, os_lab: Lab, os_conn: Any, kube: Any, kubectl: Any
) -> None:
    kubectl.apply(injection("doctor", command="poweroff node node2", markHostDown=True,
                            duration="15s"))  # fmt: skip
    wait_for(lambda: status(kube, "doctor").get("phase") == "Active", 120, "Active", kube,
             "doctor")  # fmt: skip
    assert os_lab.power("node2", "status") == "off"
    assert compute(os_conn, "node2").is_forced_down is True
    [record] = status(kube, "doctor")["records"]
    assert record["identity"]["markHostDown"] == {"host": "node2", "binary": "nova-compute"}
    assert record["previous"]["novaForcedDown"] is False

    wait_for(lambda: status(kube, "doctor").get("phase") == "Completed", 180, "Completed",
             kube, "doctor")  # fmt: skip
    assert os_lab.power("node2", "status") == "on"
    assert compute(os_conn, "node2").is_forced_down is False


def test_nova_force_down_undone_on_delete(
    os_target: str, os_conn: Any, kube: Any, kubectl: Any
) -> None:
    kubectl.apply(injection("fd", command="force down nova-compute service on node node3"))
    wait_for(lambda: status(kube, "fd").get("phase") == "Active", 60, "Active", kube, "fd")
    assert compute(os_conn, "node3").is_forced_down is True
    done = kubectl("delete", "faultinjection", "fd", "--wait=true", "--timeout=60s")
    assert done.returncode == 0, done.stderr
    assert compute(os_conn, "node3").is_forced_down is False


def test_bad_clouds_secret_says_which_field(
    os_target: str, os_lab: Lab, kube: Any, kubectl: Any
) -> None:
    kubectl.apply(secret("broken-clouds", {"clouds.yaml": yaml.safe_dump({"clouds": {}}).encode()}))
    manifest = lab_target_manifest(os_lab, "oslab-broken", secrets=TARGET)
    manifest["spec"]["openstack"] = {
        "cloud": "faultline-lab",
        "cloudsSecret": {"name": "broken-clouds", "key": "clouds.yaml"},
    }
    manifest["spec"]["discovery"]["openstack"] = {}
    kubectl.apply(manifest)
    try:

        def condition() -> dict[str, Any]:
            obj = kube.get(API, "FaultTarget", "oslab-broken", NAMESPACE) or {}
            conds = (obj.get("status") or {}).get("conditions") or []
            return next((c for c in conds if c["type"] == "Discovered"), {})

        wait_for(lambda: condition().get("status") == "False", 60, "Discovered=False", kube, "")
        assert "openstack.cloud 'faultline-lab'" in condition()["message"]
    finally:
        kubectl("delete", "faulttarget", "oslab-broken")

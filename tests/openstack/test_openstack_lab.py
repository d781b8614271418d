"""The lab's OpenStack control plane (`--with openstack`) is real and behaves like a cloud.

Everything is read through the test's own openstacksdk connection (`os_conn`): Keystone
issues tokens, Nova lists one nova-compute per lab node with the node's control address,
a server lands on the host asked for, and a killed nova-compute is reported down by Nova's
own heartbeat check within service_down_time, and up again once restarted.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faultline.lab import Lab, addon_openstack
from faultline.lab import openstack_services as services
from openstack_support import fake_server

pytestmark = pytest.mark.lab

NODES = ("node1", "node2", "node3")
COMPUTE = "nova-compute"


def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `check()`; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def compute_state(conn: Any, host: str) -> tuple[str, str]:
    [svc] = list(conn.compute.services(host=host, binary=COMPUTE))
    return str(svc.state), str(svc.status)


@pytest.fixture
def computes_up(os_lab: Lab, os_conn: Any) -> Iterator[None]:
    """Every nova-compute running and reported up, before and after the test."""

    def heal() -> None:
        for node in NODES:
            if addon_openstack.compute_pid(os_lab, node) is None:
                addon_openstack.start_compute(os_lab, node)
        eventually(
            lambda: all(compute_state(os_conn, n) == ("up", "enabled") for n in NODES),
            30,
            "every nova-compute up",
        )

    heal()
    yield
    heal()


def test_keystone_issues_a_token(os_conn: Any, os_cloud: dict[str, str]) -> None:
    assert os_cloud["cloud"] == "faultline-lab"
    assert os.stat(os_cloud["cloudsFile"]).st_mode & 0o777 == 0o600
    token = os_conn.session.get_token()
    assert token and token.startswith("gAAAA")  # a Fernet token
    assert os_conn.identity.find_project("admin") is not None


def test_services_and_hypervisors(os_lab: Lab, os_conn: Any, computes_up: None) -> None:
    rows = {(s.binary, s.host): (s.state, s.status) for s in os_conn.compute.services()}
    for node in NODES:
        assert rows[(COMPUTE, node)] == ("up", "enabled")
    assert {b for b, _ in rows} >= {"nova-conductor", "nova-scheduler", COMPUTE}
    assert all(state == ("up", "enabled") for state in rows.values())
    hypervisors = {h.name: h for h in os_conn.compute.hypervisors(details=True)}
    assert {name: h.host_ip for name, h in hypervisors.items()} == {
        n.name: n.ip for n in os_lab.nodes
    }
    assert {h.hypervisor_type for h in hypervisors.values()} == {"fake"}


def test_server_lands_on_the_host_asked_for(os_conn: Any, computes_up: None) -> None:
    with fake_server(os_conn, "fl-lab-test", host="node2") as server:
        assert server.compute_host == "node2"
        assert os_conn.compute.get_server(server.id).status == "ACTIVE"


def test_killed_compute_goes_down_and_comes_back(
    os_lab: Lab, os_conn: Any, computes_up: None
) -> None:
    pid = addon_openstack.compute_pid(os_lab, "node3")
    assert pid is not None
    assert addon_openstack.kill_compute(os_lab, "node3") == pid
    assert addon_openstack.compute_pid(os_lab, "node3") is None
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    # Nova reports a service down once its last heartbeat is service_down_time (8 s) old.
    took = eventually(
        lambda: compute_state(os_conn, "node3")[0] == "down", 15, "node3's nova-compute down"
    )
    assert took <= 12
    assert compute_state(os_conn, "node2") == ("up", "enabled")  # only node3's went

    new_pid = addon_openstack.start_compute(os_lab, "node3")
    assert new_pid != pid
    assert addon_openstack.compute_pid(os_lab, "node3") == new_pid
    eventually(lambda: compute_state(os_conn, "node3")[0] == "up", 15, "node3's compute up")


def test_every_listener_is_on_loopback(os_lab: Lab) -> None:
    """No process of the add-on listens on the host on anything but 127.0.0.0/8; RabbitMQ
    and epmd (which always adds ::1) listen only inside the add-on's own namespace."""
    ours = set()
    for proc in services.recorded(addon_openstack.state_root(os_lab)).values():
        ours.add(proc.pid)
        ours.update(_group(proc.pid))
    listing = subprocess.run(
        ["ss", "-H", "-ltnup"], capture_output=True, text=True, check=True
    ).stdout
    checked = 0
    for line in listing.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if not pids & ours:
            continue
        checked += 1
        local = line.split()[4]
        address = local.rsplit(":", 1)[0].strip("[]")
        assert address.startswith("127."), line
    assert checked >= 7  # the rabbit forwarder, mariadb, 5 APIs, ...
    netns = addon_openstack.mq_netns(os_lab)
    argv = ["ip", "netns", "exec", netns, "ss", "-H", "-ltn"]
    inside = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    ports = addon_openstack.ports(os_lab)
    listening = {line.split()[3].rsplit(":", 1)[1] for line in inside.splitlines()}
    assert {str(ports["rabbit"]), str(ports["epmd"])} <= listening, inside


def _group(pgid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                pids.add(int(entry.name))
    return pids

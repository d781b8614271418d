"""Container actions on real podman containers inside lab nodes."""

from __future__ import annotations

from typing import Any

import pytest

import faultline
from lab_observe import NODES, out

pytestmark = pytest.mark.lab


def running(lab: Any, node: str) -> str:
    return out(lab, node, "podman inspect -f '{{.State.Running}}' web")


def test_terminate_one_container_and_recover(lab: Any, cloud: Any) -> None:
    assert all(running(lab, n) == "true" for n in NODES)
    web = cloud.get_container("web")
    assert web.get_nodes().get_fqdns() == list(NODES)
    result = web.terminate(nodes=cloud.get_nodes(["node2"]))
    assert running(lab, "node2") == "false"
    assert running(lab, "node1") == "true" and running(lab, "node3") == "true"
    cloud.recover(result)
    assert running(lab, "node2") == "true"


def test_restart_gives_a_new_process(lab: Any, cloud: Any) -> None:
    pid = "podman inspect -f '{{.State.Pid}}' web"
    before = {n: out(lab, n, pid) for n in NODES}
    faultline.human_api(cloud, "restart web container on node3 node")
    assert out(lab, "node3", pid) not in ("", "0", before["node3"])
    assert out(lab, "node1", pid) == before["node1"]


def test_start_restores_previous_stopped_state(lab: Any, cloud: Any) -> None:
    lab.exec("node1", "podman stop -t 1 web")
    result = cloud.get_container("web").start(nodes=cloud.get_nodes(["node1"]))
    assert running(lab, "node1") == "true"
    cloud.recover(result)
    assert running(lab, "node1") == "false"


def test_docker_container_terminate_and_recover(lab: Any, cloud: Any) -> None:
    docker = "docker inspect -f '{{.State.Running}}' web"
    web = cloud.get_container("web-docker")
    result = web.terminate(nodes=cloud.get_nodes(["node1"]))
    assert out(lab, "node1", docker) == "false"
    assert out(lab, "node2", docker) == "true"
    assert running(lab, "node1") == "true"  # podman's web on the same node is untouched
    cloud.recover(result)
    assert out(lab, "node1", docker) == "true"

"""Bad input is refused with a clear error, before anything is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import faultline
from faultline.api import VerifyError
from faultline.models.errors import (
    HostKeyError,
    SentenceError,
    UnknownNodeError,
    UnknownServiceError,
)
from lab_observe import NODES, pids

pytestmark = pytest.mark.lab


def test_unknown_service_lists_known_ones(cloud: Any) -> None:
    with pytest.raises(UnknownServiceError, match="memcached, redis"):
        cloud.get_service("nova-api")
    with pytest.raises(UnknownServiceError):
        faultline.human_api(cloud, "kill nova-api service on one node")


def test_unknown_node(cloud: Any) -> None:
    with pytest.raises(UnknownNodeError, match="node7"):
        cloud.get_nodes(["node7"])


def test_malformed_sentence_points_at_the_word(lab: Any, cloud: Any) -> None:
    before = {n: pids(lab, n, "memcached") for n in NODES}
    with pytest.raises(SentenceError) as err:
        faultline.human_api(cloud, "kil memcached service on one node")
    assert err.value.word == "kil" and err.value.position == 0
    assert "kill" in err.value.expected
    assert {n: pids(lab, n, "memcached") for n in NODES} == before


def test_host_key_mismatch_is_refused(lab: Any, tmp_path: Path) -> None:
    data = yaml.safe_load(lab.config_path.read_text())
    wrong = tmp_path / "known_hosts"
    lines = Path(data["ssh"]["knownHostsFile"]).read_text().splitlines()
    # Swap keys between nodes: every node now presents a key that is not the one we trust.
    keys = [line.split(" ", 1) for line in lines if line.strip()]
    rotated = [f"{host} {keys[(i + 1) % len(keys)][1]}" for i, (host, _) in enumerate(keys)]
    wrong.write_text("\n".join(rotated) + "\n")
    data["ssh"]["knownHostsFile"] = str(wrong)
    before = pids(lab, "node1", "memcached")
    with faultline.connect(data) as cloud:
        with pytest.raises(VerifyError) as err:
            cloud.verify()
        assert all(not c.reachable and "host key" in (c.error or "") for c in err.value.checks)
        with pytest.raises(faultline.ActionError) as act:
            cloud.get_service("memcached").kill(nodes=cloud.get_nodes(["node1"]))
        assert "host key" in str(act.value)
    assert pids(lab, "node1", "memcached") == before


def test_host_key_unknown_is_refused_by_default(lab: Any, tmp_path: Path) -> None:
    data = yaml.safe_load(lab.config_path.read_text())
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    data["ssh"]["knownHostsFile"] = str(empty)
    with faultline.connect(data) as cloud, pytest.raises(VerifyError, match="not trusted"):
        cloud.verify()
    data["ssh"]["insecureSkipHostKeyCheck"] = True
    with faultline.connect(data) as cloud:
        assert len(cloud.verify()) == len(NODES)


def test_verify_reports_every_node(cloud: Any) -> None:
    checks = cloud.verify()
    assert [c.fqdn for c in checks] == list(NODES)
    assert all(c.reachable for c in checks)


def test_host_key_error_type_is_exported() -> None:
    assert issubclass(HostKeyError, faultline.FaultlineError)


def test_jump_host(lab: Any) -> None:
    """Reach node2 and node3 through node1 (sshd TCP forwarding), host keys verified.

    The host has no route to the management network; only node1 can reach it.
    """
    data = yaml.safe_load(lab.config_path.read_text())
    nodes = data["discovery"]["static"]["nodes"]
    data["ssh"]["jumpHost"] = {"host": nodes[0]["ip"]}
    mgmt = {n.name: n.mgmt_ip for n in lab.nodes}
    data["discovery"]["static"]["nodes"] = [
        {**n, "ip": mgmt[n["fqdn"]]} for n in nodes if n["fqdn"] != "node1"
    ]
    with faultline.connect(data) as cloud:
        checks = cloud.verify()
        assert [c.fqdn for c in checks] == ["node2", "node3"]
        result = cloud.get_service("memcached").restart(nodes=cloud.get_nodes(["node3"]))
        assert result.ok

"""Ganeti verbs through the os-faults style API and the human API, on the lab's real cluster.

The state is read back with `gnt-*` inside the cluster, never from what Faultline reports.
"""

from __future__ import annotations

from typing import Any

import pytest
from ganeti_helpers import INST1, INST2, NODE2, instance_status, node_role_cli

from faultline import human_api
from faultline.lab import Lab
from faultline.models.errors import NoNodesSelectedError
from faultline.models.records import RecordPhase

pytestmark = pytest.mark.lab


def test_drain_sentence_drains_the_named_node_and_recovery_restores_its_role(
    cloud: Any, glab: Lab
) -> None:
    assert node_role_cli(glab, NODE2) == "C"
    result = human_api(cloud, f"drain ganeti node on {NODE2} node")
    assert [r.node for r in result.records] == [NODE2]
    assert node_role_cli(glab, NODE2) == "D"
    cloud.recover(result)
    assert node_role_cli(glab, NODE2) == "C"


def test_shutdown_sentence_picks_one_instance(cloud: Any, glab: Lab) -> None:
    result = human_api(cloud, "shutdown ganeti instance on one node")
    (record,) = result.records
    assert record.identity["object"] == "instance"
    assert instance_status(glab, record.node) == "ADMIN_down"
    others = [i for i in (INST1, INST2) if i != record.node]
    assert all(instance_status(glab, i) == "running" for i in others)
    assert cloud.recover(result).records[0].phase == RecordPhase.RECOVERED
    assert instance_status(glab, record.node) == "running"


def test_a_sentence_naming_a_node_of_the_wrong_kind_touches_nothing(cloud: Any, glab: Lab) -> None:
    for sentence in (f"drain ganeti node on {INST1} node", "drain ganeti node on node1 node"):
        with pytest.raises(NoNodesSelectedError, match="not among the Ganeti nodes"):
            human_api(cloud, sentence)
    assert instance_status(glab, INST1) == "running"
    assert node_role_cli(glab, NODE2) == "C"


def test_node_collection_verbs(cloud: Any, glab: Lab) -> None:
    offline = cloud.get_nodes([NODE2]).ganeti_offline()
    assert node_role_cli(glab, NODE2) == "O"
    cloud.recover(offline)
    assert node_role_cli(glab, NODE2) == "C"
    stopped = cloud.get_nodes([INST2]).ganeti_shutdown(timeout=0)
    assert stopped.records[0].identity["timeout"] == 0
    assert instance_status(glab, INST2) == "ADMIN_down"
    cloud.recover(stopped)
    assert instance_status(glab, INST2) == "running"

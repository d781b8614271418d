"""NodeCollection: set algebra and selection (os-faults' pick crashes on Python 3.11)."""

from __future__ import annotations

import pytest

from faultline.engine.nodes import Node, NodeCollection
from faultline.models.errors import NoNodesSelectedError

N1, N2, N3 = (
    Node(f"node{i}", f"10.0.0.{i}", labels={"role": r})
    for i, r in ((1, "controller"), (2, "compute"), (3, "compute"))
)


def test_set_algebra() -> None:
    a = NodeCollection([N1, N2])
    b = NodeCollection([N2, N3])
    assert (a | b).get_fqdns() == ["node1", "node2", "node3"]
    assert (a & b).get_fqdns() == ["node2"]
    assert (a - b).get_fqdns() == ["node1"]
    assert (a ^ b).get_fqdns() == ["node1", "node3"]
    assert N1 in a and N3 not in a
    assert NodeCollection([N2]).issubset(a)


def test_pick_is_a_random_subset_of_the_requested_size() -> None:
    nodes = NodeCollection([N1, N2, N3])
    seen = set()
    for _ in range(60):
        picked = nodes.pick()
        assert len(picked) == 1
        seen |= set(picked.get_fqdns())
    assert seen == {"node1", "node2", "node3"}
    assert len(nodes.pick(2)) == 2


def test_pick_is_fail_closed() -> None:
    with pytest.raises(NoNodesSelectedError, match="cannot pick 4"):
        NodeCollection([N1, N2, N3]).pick(4)
    with pytest.raises(NoNodesSelectedError):
        NodeCollection().pick()


def test_percent_rounds_up_to_at_least_one() -> None:
    nodes = NodeCollection([N1, N2, N3])
    assert len(nodes.pick_percent(30)) == 1
    assert len(nodes.pick_percent(34)) == 2
    assert len(nodes.pick_percent(100)) == 3


def test_filter_and_labels() -> None:
    nodes = NodeCollection([N1, N2, N3])
    assert nodes.with_labels({"role": "compute"}).get_fqdns() == ["node2", "node3"]
    assert nodes.filter(lambda n: n.ip.endswith(".1")).get_fqdns() == ["node1"]


def test_unbound_collection_refuses_actions() -> None:
    with pytest.raises(RuntimeError, match="not bound"):
        NodeCollection([N1]).reboot()

"""Node and NodeCollection: the cloud's hosts and set algebra over them (os-faults API)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faultline.models.config import BmcSpec
from faultline.models.errors import NoNodesSelectedError

if TYPE_CHECKING:
    from faultline.models.records import ActionResult


@dataclass(frozen=True, order=True)
class Node:
    fqdn: str
    ip: str
    mac: str | None = field(default=None, compare=False)
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    ssh_port: int | None = field(default=None, compare=False)
    ssh_user: str | None = field(default=None, compare=False)
    bmc: BmcSpec | None = field(default=None, compare=False, hash=False)

    def __repr__(self) -> str:
        return f"Node(fqdn={self.fqdn!r}, ip={self.ip!r})"


class NodeActions:
    """What a NodeCollection needs from its cloud to act on nodes (set by the api layer)."""

    def node_action(self, nodes: NodeCollection, action: str, **params: Any) -> ActionResult:
        raise NotImplementedError


class NodeCollection:
    """An immutable, ordered set of nodes with os-faults' selection and set algebra."""

    def __init__(self, nodes: Iterable[Node] = (), cloud: NodeActions | None = None) -> None:
        self._nodes: tuple[Node, ...] = tuple(sorted(set(nodes)))
        self._cloud = cloud

    def _new(self, nodes: Iterable[Node]) -> NodeCollection:
        return NodeCollection(nodes, self._cloud)

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self._nodes

    @property
    def hosts(self) -> tuple[Node, ...]:
        """os-faults name for the same thing."""
        return self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes)

    def __contains__(self, item: object) -> bool:
        return item in self._nodes

    def __bool__(self) -> bool:
        return bool(self._nodes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeCollection) and self._nodes == other._nodes

    def __hash__(self) -> int:
        return hash(self._nodes)

    def __repr__(self) -> str:
        return f"NodeCollection({[n.fqdn for n in self._nodes]})"

    def _other(self, other: NodeCollection) -> set[Node]:
        if not isinstance(other, NodeCollection):
            return NotImplemented
        return set(other._nodes)

    def __or__(self, other: NodeCollection) -> NodeCollection:
        return self._new(set(self._nodes) | self._other(other))

    def __and__(self, other: NodeCollection) -> NodeCollection:
        return self._new(set(self._nodes) & self._other(other))

    def __sub__(self, other: NodeCollection) -> NodeCollection:
        return self._new(set(self._nodes) - self._other(other))

    def __xor__(self, other: NodeCollection) -> NodeCollection:
        return self._new(set(self._nodes) ^ self._other(other))

    union = __or__
    intersection = __and__
    difference = __sub__
    symmetric_difference = __xor__

    def issubset(self, other: NodeCollection) -> bool:
        return set(self._nodes) <= set(other._nodes)

    def get_fqdns(self) -> list[str]:
        return [n.fqdn for n in self._nodes]

    def get_ips(self) -> list[str]:
        return [n.ip for n in self._nodes]

    def pick(self, count: int = 1) -> NodeCollection:
        """A random subset of `count` nodes; fail-closed when there are fewer."""
        if count < 1:
            raise NoNodesSelectedError(f"pick(count={count}): count must be at least 1")
        if count > len(self._nodes):
            raise NoNodesSelectedError(
                f"cannot pick {count} node(s) from {len(self._nodes)}: {self.get_fqdns()}"
            )
        return self._new(random.sample(self._nodes, count))

    def pick_percent(self, percent: int) -> NodeCollection:
        """At least one node; rounds up (in integers: 3.0000001 must not become 4)."""
        if not 0 < percent <= 100:
            raise NoNodesSelectedError(f"percent must be in (0, 100], got {percent}")
        return self.pick(max(1, -(-percent * len(self._nodes) // 100)))

    def filter(self, criteria: Callable[[Node], bool]) -> NodeCollection:
        return self._new(n for n in self._nodes if criteria(n))

    def with_labels(self, labels: Mapping[str, str]) -> NodeCollection:
        return self.filter(lambda n: all(n.labels.get(k) == v for k, v in labels.items()))

    # --- actions (os-faults NodeCollection verbs) ---------------------------------------

    def _act(self, action: str, **params: Any) -> ActionResult:
        if self._cloud is None:
            raise RuntimeError("this NodeCollection is not bound to a cloud")
        return self._cloud.node_action(self, action, **params)

    def reboot(self, sec: int | None = None) -> ActionResult:
        return self._act("reboot", sec=sec)

    def shutdown(self, sec: int | None = None) -> ActionResult:
        return self._act("shutdown", sec=sec)

    def oom(self, sec: int | None = None) -> ActionResult:
        return self._act("oom", sec=sec)

    def stress(
        self, target: str = "cpu", duration: int | None = None, sec: int | None = None
    ) -> ActionResult:
        return self._act("stress", target=target, sec=sec or duration)

    def disconnect(self, network_name: str, sec: int | None = None) -> ActionResult:
        return self._act("disconnect", network=network_name, sec=sec)

    def connect(self, network_name: str, sec: int | None = None) -> ActionResult:
        return self._act("connect", network=network_name, sec=sec)

    def poweroff(self, sec: int | None = None, mark_host_down: bool = False) -> ActionResult:
        """`mark_host_down`: also force each node's nova-compute down while it is off
        (OPNFV Doctor), unset after it is powered on again."""
        if mark_host_down:
            return self._act("poweroff", sec=sec, mark_host_down=True)
        return self._act("poweroff", sec=sec)

    def poweron(self, sec: int | None = None) -> ActionResult:
        return self._act("poweron", sec=sec)

    def reset(self, sec: int | None = None) -> ActionResult:
        return self._act("reset", sec=sec)

    def snapshot(
        self, snapshot_name: str, suspend: bool = True, sec: int | None = None
    ) -> ActionResult:
        """Snapshot each node through its power backend (libvirt); os-faults' verb."""
        return self._act("snapshot", name=snapshot_name, suspend=suspend, sec=sec)

    def revert(
        self, snapshot_name: str, resume: bool = True, sec: int | None = None
    ) -> ActionResult:
        """Revert each node to a snapshot (an undo snapshot is taken first for rollback)."""
        return self._act("revert", name=snapshot_name, resume=resume, sec=sec)

    # --- Ganeti (needs the `ganeti` section; nodes discovered from the cluster) ----------

    def ganeti_shutdown(self, timeout: int | None = None, sec: int | None = None) -> ActionResult:
        """Shut the Ganeti instances down (`timeout`: seconds Ganeti waits for a clean stop
        before it pulls the plug); rollback starts them again."""
        if timeout is None:
            return self._act("ganeti-shutdown", sec=sec)
        return self._act("ganeti-shutdown", timeout=timeout, sec=sec)

    def ganeti_startup(self, sec: int | None = None) -> ActionResult:
        """Start the Ganeti instances; rollback stops those that were stopped before."""
        return self._act("ganeti-startup", sec=sec)

    def ganeti_reboot(self, reboot_type: str = "hard", sec: int | None = None) -> ActionResult:
        """Reboot the Ganeti instances (`reboot_type`: hard, soft or full)."""
        return self._act("ganeti-reboot", type=reboot_type, sec=sec)

    def ganeti_drain(self, sec: int | None = None) -> ActionResult:
        """Drain the Ganeti nodes; rollback gives each its previous role back."""
        return self._act("ganeti-drain", sec=sec)

    def ganeti_offline(self, sec: int | None = None) -> ActionResult:
        """Mark the Ganeti nodes offline; rollback gives each its previous role back."""
        return self._act("ganeti-offline", sec=sec)

    def ganeti_regular(self, sec: int | None = None) -> ActionResult:
        """Make the Ganeti nodes regular (not master candidates); rollback restores the role."""
        return self._act("ganeti-regular", sec=sec)

    # --- Nova's view of these nodes (needs the `openstack` section) ----------------------

    def force_down(self, binary: str = "nova-compute", sec: int | None = None) -> ActionResult:
        """Force the nodes' Nova service down (as Doctor does for a failed host)."""
        return self._act("force-down", binary=binary, sec=sec)

    def unset_force_down(
        self, binary: str = "nova-compute", sec: int | None = None
    ) -> ActionResult:
        return self._act("unset-force-down", binary=binary, sec=sec)

    def disable_service(
        self, binary: str = "nova-compute", reason: str | None = None, sec: int | None = None
    ) -> ActionResult:
        """Disable the nodes' Nova service (no new servers are scheduled there)."""
        params: dict[str, Any] = {"binary": binary, "sec": sec}
        if reason:
            params["reason"] = reason
        return self._act("disable", **params)

    def enable_service(self, binary: str = "nova-compute", sec: int | None = None) -> ActionResult:
        return self._act("enable", binary=binary, sec=sec)

"""Names and addresses of one lab: everything derives from the lab index K.

All kernel object names carry the prefix ``flab<K>-`` so that several labs (tests, demo)
and leftovers of crashed runs never collide, and a lab can be torn down by prefix alone.
Interface names stay within the kernel's 15 characters: ``flab250-n200c`` is 13.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_INDEX = 250
MAX_NODES = 200
CONTROL_NET = "10.251"
MGMT_NET = "10.252"
GUARD_ROUTES = (f"{CONTROL_NET}.0.0/16", f"{MGMT_NET}.0.0/16")
NODE_CONTROL_IFACE = "eth0"
NODE_MGMT_IFACE = "eth1"
HUB_BRIDGE = "mgmt0"

_PREFIX = re.compile(r"^flab(\d{1,3})-")


def index_of(name: str) -> int | None:
    """The lab index a kernel object name belongs to, or None when it is not a lab name."""
    match = _PREFIX.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class NodeLayout:
    number: int
    name: str
    netns: str
    control_veth: str
    mgmt_veth: str
    ip: str
    mgmt_ip: str

    @property
    def control_cidr(self) -> str:
        return f"{self.ip}/24"

    @property
    def mgmt_cidr(self) -> str:
        return f"{self.mgmt_ip}/24"


@dataclass(frozen=True)
class LabLayout:
    index: int
    node_count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_INDEX:
            raise ValueError(f"lab index must be 1..{MAX_INDEX}, got {self.index}")
        if not 1 <= self.node_count <= MAX_NODES:
            raise ValueError(f"node count must be 1..{MAX_NODES}, got {self.node_count}")

    @property
    def prefix(self) -> str:
        return f"flab{self.index}-"

    @property
    def hub_netns(self) -> str:
        return f"{self.prefix}hub"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> str:
        return f"{CONTROL_NET}.{self.index}.1"

    def node(self, number: int) -> NodeLayout:
        host = 10 + number
        return NodeLayout(
            number=number,
            name=f"node{number}",
            netns=f"{self.prefix}n{number}",
            control_veth=f"{self.prefix}n{number}c",
            mgmt_veth=f"{self.prefix}n{number}m",
            ip=f"{CONTROL_NET}.{self.index}.{host}",
            mgmt_ip=f"{MGMT_NET}.{self.index}.{host}",
        )

    @property
    def nodes(self) -> list[NodeLayout]:
        return [self.node(i) for i in range(1, self.node_count + 1)]

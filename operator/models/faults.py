"""The fault catalog's vocabulary: which kinds and actions exist, and their inverses."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from faultline.models.base import Model


class FaultKind(StrEnum):
    SERVICE = "service"
    CONTAINER = "container"
    NODE = "node"
    NETWORK = "network"
    POWER = "power"
    NOVA = "nova"
    GANETI = "ganeti"


SERVICE_ACTIONS = (
    "start",
    "terminate",
    "restart",
    "kill",
    "freeze",
    "unfreeze",
    "unplug",
    "plug",
)
CONTAINER_ACTIONS = ("start", "terminate", "restart")
NODE_ACTIONS = ("reboot", "shutdown", "oom", "stress")
NETWORK_ACTIONS = ("disconnect", "connect")
POWER_ACTIONS = ("poweroff", "poweron", "reset", "shutdown", "snapshot", "revert")
#: What a node verb in the API or a sentence means through a power backend. `shutdown` is
#: not among them: it is the node's own (over SSH), recovered through a backend if any.
BACKEND_POWER_VERBS = ("poweroff", "poweron", "reset")

#: Through Nova's API, on the nova-compute service of the selected nodes' Nova hosts.
NOVA_ACTIONS = ("force-down", "unset-force-down", "disable", "enable")
#: Through Ganeti's RAPI: instance verbs on instance nodes, role verbs on Ganeti nodes.
GANETI_INSTANCE_ACTIONS = ("shutdown", "startup", "reboot")
GANETI_NODE_ACTIONS = ("drain", "offline", "regular")
GANETI_ACTIONS = (*GANETI_INSTANCE_ACTIONS, *GANETI_NODE_ACTIONS)
#: The discovery label that says whether a node is a Ganeti "instance" or "node".
GANETI_KIND_LABEL = "ganeti.kind"

ACTIONS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.SERVICE: SERVICE_ACTIONS,
    FaultKind.CONTAINER: CONTAINER_ACTIONS,
    FaultKind.NODE: NODE_ACTIONS,
    FaultKind.NETWORK: NETWORK_ACTIONS,
    FaultKind.POWER: POWER_ACTIONS,
    FaultKind.NOVA: NOVA_ACTIONS,
    FaultKind.GANETI: GANETI_ACTIONS,
}


class FaultSpec(Model):
    """One fault: what (kind, action, target name) and how (params)."""

    kind: FaultKind
    action: str
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

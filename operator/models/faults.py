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
POWER_ACTIONS = ("poweroff", "poweron", "reset", "shutdown")

ACTIONS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.SERVICE: SERVICE_ACTIONS,
    FaultKind.CONTAINER: CONTAINER_ACTIONS,
    FaultKind.NODE: NODE_ACTIONS,
    FaultKind.NETWORK: NETWORK_ACTIONS,
    FaultKind.POWER: POWER_ACTIONS,
}


class FaultSpec(Model):
    """One fault: what (kind, action, target name) and how (params)."""

    kind: FaultKind
    action: str
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

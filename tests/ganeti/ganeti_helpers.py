"""Helpers shared by the Ganeti lab tests (constants, observing the cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import yaml

from faultline.lab import Lab
from faultline.lab import addon_ganeti as addon
from faultline.lab import ganeti_cluster as gc

T = TypeVar("T")

MASTER, NODE2 = gc.NODES
INST1, INST2, INST3 = gc.INSTANCES


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def gnt(lab: Lab, *argv: str) -> str:
    return addon.gnt(lab, argv).stdout


def instance_status(lab: Lab, name: str) -> str:
    """The instance's status as `gnt-instance list` shows it (not through RAPI)."""
    return gnt(lab, "gnt-instance", "list", "--no-headers", "-o", "status", name).strip()


def node_role_cli(lab: Lab, name: str) -> str:
    """M, C, R, D or O, as `gnt-node list` shows it."""
    return gnt(lab, "gnt-node", "list", "--no-headers", "-o", "role", name).strip()


def cloud_config(glab: Lab, **discovery: Any) -> dict[str, Any]:
    """The lab's target plus Ganeti discovery (nodes and instances by default)."""
    data: dict[str, Any] = yaml.safe_load(glab.config_path.read_text())
    data["discovery"]["ganeti"] = discovery
    return data

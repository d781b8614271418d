"""The lab's state file (state.json): what was built and which processes run it.

`lab up` writes it once; from then on the supervisor is its only writer (pids and power
change with every boot). Writes replace the file atomically so readers never see half of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from faultline.lab.system import LabError, ProcessId

STATE_FILE = "state.json"
FORMAT = 1


@dataclass
class LabNode:
    name: str
    fqdn: str
    ip: str
    mgmt_ip: str
    netns: str
    control_veth: str
    mgmt_veth: str
    cgroup_path: str
    role: str
    node_dir: str
    power: str = "off"  # off | booting | on
    boots: int = 0
    init_pid: int | None = None  # host pid of the node's PID 1 (tini); None while off
    init_start: int | None = None

    @property
    def init(self) -> ProcessId | None:
        if self.init_pid is None or self.init_start is None:
            return None
        return ProcessId(self.init_pid, self.init_start)


@dataclass
class LabState:
    index: int
    state_dir: str
    prefix: str
    bridge: str
    hub_netns: str
    gateway: str
    nodes: list[LabNode]
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    created: float = 0.0
    format: int = FORMAT

    @property
    def supervisor(self) -> ProcessId | None:
        if self.supervisor_pid is None or self.supervisor_start is None:
            return None
        return ProcessId(self.supervisor_pid, self.supervisor_start)

    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if name in (node.name, node.fqdn, node.ip):
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise LabError(f"no lab node {name!r} (nodes: {known})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        node_keys = {f.name for f in fields(LabNode)}
        nodes = [LabNode(**{k: v for k, v in n.items() if k in node_keys}) for n in data["nodes"]]
        keys = {f.name for f in fields(cls)} - {"nodes"}
        return cls(nodes=nodes, **{k: v for k, v in data.items() if k in keys})


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def load_state(state_dir: Path) -> LabState | None:
    try:
        raw = state_path(state_dir).read_text()
    except FileNotFoundError:
        return None
    try:
        return LabState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{state_path(state_dir)} is not a lab state file: {exc}") from exc


def save_state(state: LabState) -> None:
    path = state_path(Path(state.state_dir))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_json(), f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_state(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)

"""Lab add-ons: extra real components around the nodes (BMC simulators, libvirtd, ...).

An add-on lives in `faultline.lab.addon_<name>` and exposes `ADDON`, an object with:

- `up(lab) -> dict`: start its daemons (recording their pids under `addon_dir(lab, name)`),
  return a fragment merged into the lab's target.yaml: `{"power": [...], "nodes": {fqdn:
  {"bmc": {...}}}}` (node fields are merged into that node's entry); any other top-level
  key (e.g. `openstack`) is set at the target's top level;
- `down(lab) -> None`: stop them; idempotent, also for a half-started add-on.

`Lab.up(addons=...)` runs them after the nodes answer; `Lab.down()` stops every add-on
whose directory exists, so a crashed run is cleaned up too.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from faultline.lab.system import LabError

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

KNOWN = ("ipmi", "libvirt", "redfish", "k8s", "openstack", "ganeti")


class LabAddon(Protocol):
    def up(self, lab: Lab) -> dict[str, Any]: ...
    def down(self, lab: Lab) -> None: ...


def addon_dir(lab: Lab, name: str) -> Path:
    path = lab.state_dir / "addons" / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def load(name: str) -> LabAddon:
    if name not in KNOWN:
        raise LabError(f"unknown lab add-on {name!r}; known: {', '.join(KNOWN)}")
    module = importlib.import_module(f"faultline.lab.addon_{name}")
    addon: LabAddon = module.ADDON
    return addon


def started(lab: Lab) -> list[str]:
    root = lab.state_dir / "addons"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def merge_into_target(config_path: Path, fragment: dict[str, Any]) -> None:
    data = yaml.safe_load(config_path.read_text())
    data.setdefault("power", []).extend(fragment.get("power", []))
    by_fqdn = {n["fqdn"]: n for n in data["discovery"]["static"]["nodes"]}
    for fqdn, fields in fragment.get("nodes", {}).items():
        by_fqdn[fqdn].update(fields)
    for key, value in fragment.items():
        if key not in ("power", "nodes"):
            data[key] = value
    config_path.write_text(
        "# Faultline target for the local lab; written by `faultline lab up`.\n"
        + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    )

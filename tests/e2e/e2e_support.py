"""Helpers shared by the end-to-end tests and their fixtures."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from faultline.lab import Lab

NAMESPACE = "default"


def lab_target_manifest(lab: Lab, name: str = "lab", secrets: str = "lab") -> dict[str, Any]:
    """The lab's target.yaml as a FaultTarget whose credentials come from the Secrets
    `<secrets>-ssh` (id_ed25519, known_hosts) and `<secrets>-bmc` (password)."""
    spec = yaml.safe_load(lab.config_path.read_text())
    ssh = spec["ssh"]
    ssh.pop("privateKeyFile")
    ssh.pop("knownHostsFile")
    ssh["privateKeySecret"] = {"name": f"{secrets}-ssh", "key": "id_ed25519"}
    ssh["knownHostsSecret"] = {"name": f"{secrets}-ssh", "key": "known_hosts"}
    for node in spec["discovery"]["static"]["nodes"]:  # BMC passwords come from a Secret too
        bmc = node.get("bmc")
        if bmc and bmc.pop("passwordFile", None):
            bmc["passwordSecret"] = {"name": f"{secrets}-bmc", "key": "password"}
    return {
        "apiVersion": "faultline.dev/v1alpha1",
        "kind": "FaultTarget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def lab_secrets(lab: Lab, secrets: str = "lab") -> list[dict[str, Any]]:
    """The Secrets lab_target_manifest(lab, secrets=...) refers to."""
    out = [
        secret(
            f"{secrets}-ssh",
            {
                "id_ed25519": lab.private_key_path.read_bytes(),
                "known_hosts": lab.known_hosts_path.read_bytes(),
            },
        )
    ]
    nodes = yaml.safe_load(lab.config_path.read_text())["discovery"]["static"]["nodes"]
    bmc_files = {n["bmc"]["passwordFile"] for n in nodes if n.get("bmc")}
    if bmc_files:
        (bmc_file,) = bmc_files  # one password for the lab's BMCs
        out.append(secret(f"{secrets}-bmc", {"password": Path(bmc_file).read_bytes()}))
    return out

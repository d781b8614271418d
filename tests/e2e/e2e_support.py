"""Helpers shared by the end-to-end tests and their fixtures."""

from __future__ import annotations

from typing import Any

import yaml

from faultline.lab import Lab

NAMESPACE = "default"


def lab_target_manifest(lab: Lab, name: str = "lab") -> dict[str, Any]:
    spec = yaml.safe_load(lab.config_path.read_text())
    ssh = spec["ssh"]
    ssh.pop("privateKeyFile")
    ssh.pop("knownHostsFile")
    ssh["privateKeySecret"] = {"name": "lab-ssh", "key": "id_ed25519"}
    ssh["knownHostsSecret"] = {"name": "lab-ssh", "key": "known_hosts"}
    for node in spec["discovery"]["static"]["nodes"]:  # BMC passwords come from a Secret too
        bmc = node.get("bmc")
        if bmc and bmc.pop("passwordFile", None):
            bmc["passwordSecret"] = {"name": "lab-bmc", "key": "password"}
    return {
        "apiVersion": "faultline.dev/v1alpha1",
        "kind": "FaultTarget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }

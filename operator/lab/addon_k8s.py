"""Lab add-on `k8s`: the Kubernetes API emulator, with the lab as a FaultTarget.

`up` starts `python -m faultline.lab.kubeapi` as a daemon on 127.0.0.1, registers the CRDs,
writes a kubeconfig to `addons/k8s/kubeconfig`, and applies a Secret `lab-ssh` (the lab's
SSH key and known_hosts) and a FaultTarget `lab` in namespace `default`, so `kubectl apply`
of a FaultInjection that names target `lab` works at once. The emulator is the one emulated
system of the lab: no kube-apiserver installs on these machines.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from faultline.lab.addons import addon_dir
from faultline.lab.system import LabError
from faultline.models import crds

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

NAMESPACE = "default"


def kubeconfig_path(lab: Lab) -> Path:
    return addon_dir(lab, "k8s") / "kubeconfig"


def lab_manifests(lab: Lab) -> list[dict[str, Any]]:
    """The Secret with the lab's SSH credentials and the lab's FaultTarget."""
    spec = yaml.safe_load(lab.config_path.read_text())
    ssh = spec["ssh"]
    ssh.pop("privateKeyFile", None)
    ssh.pop("knownHostsFile", None)
    ssh["privateKeySecret"] = {"name": "lab-ssh", "key": "id_ed25519"}
    ssh["knownHostsSecret"] = {"name": "lab-ssh", "key": "known_hosts"}
    spec.pop("power", None)  # power add-ons read local files; Secrets for them come later
    for node in spec["discovery"]["static"]["nodes"]:
        node.pop("bmc", None)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lab-ssh", "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {
            "id_ed25519": base64.b64encode(lab.private_key_path.read_bytes()).decode(),
            "known_hosts": base64.b64encode(lab.known_hosts_path.read_bytes()).decode(),
        },
    }
    target = {
        "apiVersion": "faultline.dev/v1alpha1",
        "kind": "FaultTarget",
        "metadata": {"name": "lab", "namespace": NAMESPACE},
        "spec": spec,
    }
    return [secret, target]


class K8sAddon:
    def up(self, lab: Lab) -> dict[str, Any]:
        directory = addon_dir(lab, "k8s")
        manifests = directory / "manifests"
        manifests.mkdir(exist_ok=True)
        for name, text in crds.render().items():
            (manifests / f"0-{name}").write_text(text)
        (manifests / "1-lab.yaml").write_text(yaml.safe_dump_all(lab_manifests(lab)))
        kubeconfig = kubeconfig_path(lab)
        kubeconfig.unlink(missing_ok=True)
        log = (directory / "kubeapi.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "faultline.lab.kubeapi",
                "--kubeconfig",
                str(kubeconfig),
                "--apply",
                str(manifests),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        (directory / "pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (directory / "kubeapi.log").read_text(errors="replace")[-2000:]
                raise LabError(f"the Kubernetes API emulator did not start:\n{tail}")
            time.sleep(0.05)
        return {}

    def down(self, lab: Lab) -> None:
        pid_file = addon_dir(lab, "k8s") / "pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"faultline.lab.kubeapi" in cmdline:
                    os.kill(pid, signal.SIGTERM)
            pid_file.unlink()


ADDON = K8sAddon()

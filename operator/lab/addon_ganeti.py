"""Lab add-on `ganeti`: a real two-node Ganeti 3.0 cluster, RAPI on 127.0.0.1.

`up` installs Debian's `ganeti` (with --no-install-recommends) and `socat` when missing,
then builds the cluster described in `ganeti_cluster.py`: its own network, mount and PID
namespace, virtual-cluster mode, fake hypervisor, diskless instances with the no-op OS.
Nodes `gnt1.ganeti.test` (master) and `gnt2.ganeti.test`; running instances
`inst1..inst3.ganeti.test` with NIC IPs; a RAPI user `faultline` with a random password
in a 0600 file; the RAPI certificate (no key) in `rapi.pem` for pinning.

The add-on returns `{"ganeti": {"url": "https://127.0.0.1:PORT", "username": "faultline",
"passwordFile": ..., "caFile": ...}}`, the top-level `ganeti` section of target.yaml.
It adds no `discovery.ganeti` and no power backend: the Ganeti objects are not SSH nodes of
the lab; tests and users opt in to discovery in a config of their own.

Run Ganeti's own commands with `gnt(lab, ["gnt-instance", "list"])`. `down` stops the
forwarder and the namespace's init by recorded pid (SIGKILL to that init ends every
process inside), then whatever is left in the add-on's cgroup; idempotent.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultline.lab import ganeti_cluster as gc
from faultline.lab import packages
from faultline.lab.addons import addon_dir
from faultline.lab.layout import LabLayout
from faultline.lab.system import LabError

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

NAME = "ganeti"
PACKAGES = ("ganeti", "socat")
TIMINGS = "timings.json"


def state_root(lab: Lab) -> Path:
    """The add-on's directory, without creating it (down must not)."""
    return lab.state_dir / "addons" / NAME


def info(lab: Lab) -> gc.ClusterInfo:
    found = gc.ClusterInfo.load(state_root(lab))
    if found is None or not found.url:
        raise LabError(f"the ganeti add-on is not up in {lab.state_dir}")
    return found


def gnt(lab: Lab, argv: Sequence[str], node: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Ganeti command line tool inside the cluster (on the master by default)."""
    return gc.gnt(info(lab), argv, node)


def fragment(cluster: gc.ClusterInfo) -> dict[str, Any]:
    d = cluster.dir
    return {
        "ganeti": {
            "url": cluster.url,
            "username": gc.RAPI_USER,
            "passwordFile": str(d / gc.PASSWORD_FILE),
            "caFile": str(d / gc.CERT_FILE),
        }
    }


class GanetiAddon:
    def up(self, lab: Lab) -> dict[str, Any]:
        started = time.monotonic()
        installed = packages.ensure(PACKAGES)
        self.down(lab)  # leftovers of an earlier run
        directory = addon_dir(lab, NAME)
        state = lab.state()
        cluster = gc.plan(directory, LabLayout(state.index, 1).prefix, state.index)
        cluster.save()
        gc.write_files(cluster)
        gc.new_password(cluster)
        timings: dict[str, float] = {"install": time.monotonic() - started}
        mark = time.monotonic()
        gc.start_holder(cluster)
        gc.create_cluster(cluster)
        timings["cluster"] = time.monotonic() - mark
        gc.export_certificate(cluster)
        gc.start_forwarder(cluster)
        gc.wait_rapi(cluster)
        timings["total"] = time.monotonic() - started
        timings["installedPackages"] = float(len(installed))
        (directory / TIMINGS).write_text(
            "{" + ", ".join(f'"{k}": {v:.2f}' for k, v in timings.items()) + "}\n"
        )
        return fragment(cluster)

    def down(self, lab: Lab) -> None:
        directory = state_root(lab)
        if not directory.is_dir():
            return
        gc.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


ADDON = GanetiAddon()

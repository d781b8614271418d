"""One lab node on disk and as processes: its private files, how it boots, how to enter it.

A node is a network namespace plus, while powered on, `unshare --mount --uts --pid` running
tini as PID 1 with node-init.sh below it. The root filesystem is the host's; the node's own
/etc/ssh, /root, /var/log, /var/lib/redis, /var/tmp and daemon configs are bind mounts of
its directory in the state dir, and /run and /tmp are fresh tmpfs at every boot.
"""

from __future__ import annotations

import grp
import importlib.resources
import os
import pwd
import shlex
from collections.abc import Sequence
from pathlib import Path

from faultline.lab import cgroups, config, containers
from faultline.lab.state import LabNode
from faultline.lab.system import NODE_ENV

ASSETS = ("node-init.sh", "node-heal.sh", "node_power.py")
BIN_DIR = "bin"
# Where node-init.sh mounts the lab's bin dir inside every node.
NODE_BIN = "/run/faultline-lab/bin"
TINI = "/usr/bin/tini"


def install_assets(state_dir: Path) -> Path:
    """Copy the node scripts into the state dir (the package may not keep exec bits)."""
    bin_dir = state_dir / BIN_DIR
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    assets = importlib.resources.files("faultline.lab") / "assets"
    for name in ASSETS:
        target = bin_dir / name
        data = (assets / name).read_bytes()
        if not target.exists() or target.read_bytes() != data:
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o755)
            tmp.replace(target)
    return bin_dir


def host_key_path(node: LabNode) -> Path:
    return Path(node.node_dir) / "ssh" / config.SSH_HOST_KEY


def prepare_dir(node: LabNode, nodes: Sequence[LabNode], client_public_key: str) -> None:
    """Write the node's private files; the host key must already exist in ssh/."""
    root = Path(node.node_dir)
    ssh = root / "ssh"
    ssh.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write(ssh / "sshd_config", config.sshd_config(node.ip, node.mgmt_ip))
    _write(ssh / config.AUTHORIZED_KEYS, client_public_key + " faultline-lab\n")

    etc = root / "etc"
    etc.mkdir(mode=0o755, exist_ok=True)
    _write(etc / "hosts", config.hosts_file(nodes))
    _write(etc / "hostname", node.fqdn + "\n")
    _write(etc / "memcached.conf", config.memcached_conf())
    _write(etc / "redis-redis.conf", config.redis_conf())

    _mkdir(root / "root", 0o700)
    _mkdir(root / "vartmp", 0o1777)
    log = _mkdir(root / "log", 0o755)
    _mkdir(log / "redis", 0o2750, user="redis", group="adm")
    _mkdir(root / "redis", 0o750, user="redis", group="redis")


def prepare_containers(node: LabNode, state_dir: Path, tools: Sequence[str]) -> None:
    """Per-node engine storage to mount at boot, and the script that starts `web` in it.

    node-init.sh bind-mounts each `mounts` line (source TAB target) before /tmp is replaced,
    copies containers.sh into the node's /run, and runs it at boot; node-heal.sh runs it
    again (it only acts on an engine whose container is not running).
    """
    root = Path(node.node_dir)
    unique = Path(node.cgroup_path).name  # docker names its cgroups after it
    mounts: list[str] = []
    script = ["#!/bin/sh", "# Written by the lab: (re)start container web for each engine.", ""]
    for tool in tools:
        for source, target in containers.node_files(state_dir, unique, tool).items():
            mounts.append(f"{source}\t{target}")
        steps = "; ".join(shlex.join(argv) for argv in containers.node_boot_commands(tool))
        check = f"[ \"$({tool} inspect -f '{{{{.State.Running}}}}' web 2>/dev/null)\" = true ]"
        script.append(f"( {check} || {{ {steps}; }} >/dev/null ) &")
    script.append("wait")
    _write(root / "mounts", "".join(line + "\n" for line in mounts))
    _write(root / "containers.sh", "\n".join(script) + "\n")


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o644)


def _mkdir(path: Path, mode: int, user: str = "root", group: str = "root") -> Path:
    path.mkdir(exist_ok=True)
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    path.chmod(mode)
    return path


def boot_argv(node: LabNode, bin_dir: Path) -> list[str]:
    """The command that powers the node on; it runs until the node powers off."""
    init = [
        "nsenter",
        f"--net=/run/netns/{node.netns}",
        "--",
        "unshare",
        "--mount",
        "--uts",
        "--pid",
        "--fork",
        "--mount-proc",
        "--propagation=private",
        "--",
        TINI,
        "--",
        "/bin/bash",
        str(bin_dir / "node-init.sh"),
        node.node_dir,
        node.fqdn,
        f"{node.ip}/24",
        f"{node.mgmt_ip}/24",
        str(bin_dir),
    ]
    return cgroups.join_argv(Path(node.cgroup_path), init)


def exec_argv(node: LabNode, init_pid: int, argv: Sequence[str]) -> list[str]:
    """argv run inside a powered-on node (its net, mount, UTS and PID namespaces and its
    memory cgroup) with a clean root environment, as if logged in on the node."""
    inner = [
        "nsenter",
        f"--target={init_pid}",
        "--mount",
        "--uts",
        "--net",
        "--pid",
        "--",
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in NODE_ENV.items()),
        *argv,
    ]
    return cgroups.join_argv(Path(node.cgroup_path), inner)


def heal_argv(node: LabNode) -> list[str]:
    return [f"{NODE_BIN}/node-heal.sh", f"{node.ip}/24", f"{node.mgmt_ip}/24"]

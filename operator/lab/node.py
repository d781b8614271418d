"""One lab node on disk and as processes: its private files, how it boots, how to enter it.

A node is a network namespace plus, while powered on, `unshare --mount --uts --pid` running
tini as PID 1 with node-init.sh below it. The root filesystem is the host's; the node's own
/etc/ssh, /root, /home, /var/log, /var/lib/redis, /var/tmp, daemon configs and account files
(/etc/passwd, group, shadow, sudoers.d: the host's plus the unprivileged lab user) are bind
mounts of its directory in the state dir, and /run and /tmp are fresh tmpfs at every boot.
"""

from __future__ import annotations

import functools
import grp
import importlib.resources
import os
import pwd
import secrets
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from faultline.lab import cgroups, config, containers, packages
from faultline.lab.state import LabNode
from faultline.lab.system import NODE_ENV, run

ASSETS = ("node-init.sh", "node-heal.sh", "node_power.py")
BIN_DIR = "bin"
# Where node-init.sh mounts the lab's bin dir inside every node.
NODE_BIN = "/run/faultline-lab/bin"
TINI = "/usr/bin/tini"
#: The lab user's password (ssh.passwordFile, ssh.becomePasswordFile), one per state dir.
USER_PASSWORD_FILE = "faultline-user.password"  # noqa: S105 (a file name)
SUDO = Path("/usr/bin/sudo")


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
    _prepare_user(root, client_public_key)


def user_password_path(state_dir: Path) -> Path:
    return Path(state_dir) / USER_PASSWORD_FILE


def user_password(state_dir: Path) -> str:
    """The lab user's password: generated (0600) on first use, then kept with the state."""
    path = user_password_path(state_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text().strip()
        if password:
            return password
        path.unlink()
        return user_password(state_dir)
    password = secrets.token_urlsafe(18)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


@functools.cache
def _password_hash(password: str) -> str:
    """SHA-512 crypt, as Debian's shadow holds it (the password travels on stdin)."""
    return run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n").stdout.strip()


def _user_ids() -> tuple[int, int]:
    """A uid and gid for the lab user that no host account or group uses: counting down
    from Debian's last regular id, where the host's own useradd allocates last."""
    taken: set[int] = set()
    for table in ("/etc/passwd", "/etc/group"):
        for line in Path(table).read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[0] != config.LAB_USER and fields[2].isdigit():
                taken.add(int(fields[2]))
    free = next(i for i in range(59999, 999, -1) if i not in taken)
    return free, free


def _prepare_user(root: Path, client_public_key: str) -> None:
    """Account files with the lab user, its home (key login) and its sudoers rule.

    Copies of the host's /etc/passwd, group and shadow taken now: users the host adds later
    are not seen inside nodes until the next `lab up`.
    """
    if not SUDO.exists():
        packages.ensure(("sudo",))
    state_dir = root.parent.parent  # STATE/nodes/NAME
    password_hash = _password_hash(user_password(state_dir))
    uid, gid = _user_ids()
    etc = root / "etc"
    for name, line in (
        ("passwd", config.passwd_line(uid, gid)),
        ("group", config.group_line(gid)),
    ):
        _write(etc / name, config.with_user_line(Path("/etc", name).read_text(), line))
    today = int(time.time() // 86400)
    shadow = config.with_user_line(
        Path("/etc/shadow").read_text(), config.shadow_line(password_hash, today)
    )
    _write_private(etc / "shadow", shadow, 0o640, 0, grp.getgrnam("shadow").gr_gid)
    sudoers = _mkdir(etc / "sudoers.d", 0o755)
    _write_private(sudoers / config.LAB_USER, config.sudoers(), 0o440, 0, 0)

    home = _mkdir(root / "home", 0o755)
    user_home = _mkdir_ids(home / config.LAB_USER, 0o755, uid, gid)
    ssh = _mkdir_ids(user_home / ".ssh", 0o700, uid, gid)
    keys = ssh / config.AUTHORIZED_KEYS
    _write_private(keys, client_public_key + " faultline-lab\n", 0o600, uid, gid)


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


def _write_private(path: Path, text: str, mode: int, uid: int, gid: int) -> None:
    """Write a file no one else may read at any moment (modes set before the content)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        out.write(text)


def _mkdir(path: Path, mode: int, user: str = "root", group: str = "root") -> Path:
    return _mkdir_ids(path, mode, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)


def _mkdir_ids(path: Path, mode: int, uid: int, gid: int) -> Path:
    path.mkdir(exist_ok=True)
    os.chown(path, uid, gid)
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

"""File contents: each node's daemon configuration and the Faultline target config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from faultline.lab.layout import NODE_MGMT_IFACE
from faultline.lab.state import LabNode

SSH_HOST_KEY = "ssh_host_ed25519_key"
AUTHORIZED_KEYS = "authorized_keys"

#: The unprivileged user on every node: password and key logins, sudo with its password.
LAB_USER = "faultline"
LAB_USER_HOME = f"/home/{LAB_USER}"


def sshd_config(listen_ip: str, mgmt_ip: str) -> str:
    # No PAM: root's password is "*" (not locked), root logs in with keys only, and logins
    # stay fast.
    # MaxStartups is generous because benchmarks open many connections at once.
    return f"""\
# Faultline lab node: generated, rewritten by every `lab up`.
ListenAddress {listen_ip}:22
# Also on the management network, so one node can serve as a jump host to the others.
ListenAddress {mgmt_ip}:22
HostKey /etc/ssh/{SSH_HOST_KEY}
AuthorizedKeysFile /etc/ssh/{AUTHORIZED_KEYS}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 100
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server

# The unprivileged lab user logs in with its password (checked against the node's own
# /etc/shadow: no PAM) or with a key from its home.
Match User {LAB_USER}
    PasswordAuthentication yes
    AuthorizedKeysFile .ssh/{AUTHORIZED_KEYS}
"""


def sudoers() -> str:
    """/etc/sudoers.d/faultline: root for the lab user, after it typed its own password."""
    return f"""\
# Faultline lab node: generated, rewritten by every `lab up`.
Defaults:{LAB_USER} lecture=never, !mail_badpass
{LAB_USER} ALL=(ALL:ALL) ALL
"""


def with_user_line(host_text: str, line: str) -> str:
    """A copy of a host account database (passwd, group, shadow) plus the lab user's line."""
    kept = [x for x in host_text.splitlines() if x.split(":", 1)[0] != LAB_USER]
    return "\n".join([*kept, line]) + "\n"


def passwd_line(uid: int, gid: int) -> str:
    return f"{LAB_USER}:x:{uid}:{gid}:Faultline lab user:{LAB_USER_HOME}:/bin/bash"


def group_line(gid: int) -> str:
    return f"{LAB_USER}:x:{gid}:"


def shadow_line(password_hash: str, changed_day: int) -> str:
    # Last change today: 0 there would force a password change at the first login.
    return f"{LAB_USER}:{password_hash}:{changed_day}:0:99999:7:::"


def memcached_conf() -> str:
    # Read by Debian's start-memcached; the init script passes the pid file itself.
    return """\
# Faultline lab node
logfile /var/log/memcached.log
-m 64
-p 11211
-u memcache
-l 0.0.0.0
"""


def redis_conf() -> str:
    return """\
# Faultline lab node
bind 0.0.0.0
protected-mode no
port 6379
daemonize yes
supervised no
pidfile /run/redis/redis-server.pid
loglevel notice
logfile /var/log/redis/redis-server.log
databases 16
save ""
appendonly no
dir /var/lib/redis
"""


def hosts_file(nodes: Sequence[LabNode]) -> str:
    """Node names resolve to management addresses, so node-to-node traffic uses eth1."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for node in nodes:
        names = [node.fqdn] if node.fqdn == node.name else [node.fqdn, node.name]
        lines.append(f"{node.mgmt_ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def target_config(
    nodes: Sequence[LabNode],
    private_key: Path,
    known_hosts: Path,
    container_tools: Sequence[str] = (),
) -> dict[str, Any]:
    """The native Faultline config (camelCase) describing this lab."""
    return {
        "discovery": {
            "static": {
                "nodes": [{"fqdn": n.fqdn, "ip": n.ip, "labels": {"role": n.role}} for n in nodes],
            },
        },
        "ssh": {
            "user": "root",
            "privateKeyFile": str(private_key),
            "knownHostsFile": str(known_hosts),
        },
        "services": {
            "memcached": {
                "driver": "sysv",
                "unit": "memcached",
                "grep": "memcached",
                "port": {"protocol": "tcp", "number": 11211},
            },
            "redis": {
                "driver": "sysv",
                "unit": "redis-server",
                "grep": "redis-server",
                "port": {"protocol": "tcp", "number": 6379},
            },
        },
        "containers": {
            CONTAINER_KEYS[tool]: {"driver": tool, "name": CONTAINER_NAME}
            for tool in container_tools
        },
        "networks": {"management": NODE_MGMT_IFACE},
    }


#: Each engine runs its own container named `web` in every node; the target names them apart.
CONTAINER_NAME = "web"
CONTAINER_KEYS = {"podman": "web", "docker": "web-docker"}


def target_yaml(
    nodes: Sequence[LabNode],
    private_key: Path,
    known_hosts: Path,
    container_tools: Sequence[str] = (),
) -> str:
    header = "# Faultline target for the local lab; written by `faultline lab up`.\n"
    body = yaml.safe_dump(
        target_config(nodes, private_key, known_hosts, container_tools),
        sort_keys=False,
        default_flow_style=False,
    )
    return header + body

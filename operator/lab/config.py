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


def sshd_config(listen_ip: str, mgmt_ip: str) -> str:
    # No PAM: root's password is "*" (not locked), keys only, and logins stay fast.
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
"""


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

"""Looking at lab nodes from outside (the lab's exec, sockets, the ssh client): what a test
asserts is the real state."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

NODES = ("node1", "node2", "node3")


def out(lab: Any, node: str, script: str) -> str:
    done = lab.exec(node, script)
    return str(done.stdout).strip()


def ok(lab: Any, node: str, script: str) -> bool:
    return int(lab.exec(node, script).returncode) == 0


def pids(lab: Any, node: str, name: str) -> list[str]:
    """pids of the daemon whose process name is `name` inside the node."""
    return list(lab.pids(node, name))


def states(lab: Any, node: str, name: str) -> list[str]:
    found = (out(lab, node, f"ps -o stat= -p {p} || true") for p in lab.pids(node, name))
    return [state for state in found if state]


def link(lab: Any, node: str, iface: str = "eth1") -> str:
    flags = out(lab, node, f"ip -o link show dev {iface}")
    return "UP" if ",UP" in flags or "<UP" in flags else "DOWN"


def port_open(lab: Any, src: str, dst_mgmt_ip: str, port: int) -> bool:
    """A TCP connect from node `src` to another node over the management network."""
    return ok(lab, src, f"nc -z -w 1 {dst_mgmt_ip} {port}")


def memcached_answers(lab: Any, src: str, dst_mgmt_ip: str) -> bool:
    return "STAT pid" in out(
        lab, src, f"printf 'stats\\r\\nquit\\r\\n' | nc -w 1 {dst_mgmt_ip} 11211 || true"
    )


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")


def ssh_boot_id(lab: Any, node: str) -> str | None:
    """The node's boot id read over SSH (host key verified); None when SSH does not answer."""
    try:
        done = subprocess.run(
            lab.ssh_argv(node, "cat /proc/sys/kernel/random/boot_id"),
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def sshd_answers(lab: Any, node: str, timeout: float = 2.0) -> bool:
    """Whether the node's sshd sends its banner (a powered-off node lets the connect time out)."""
    try:
        with socket.create_connection((lab.node(node).ip, 22), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False

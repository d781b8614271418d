"""Looking at lab nodes from outside, without SSH: what a test asserts is the real state."""

from __future__ import annotations

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

#!/usr/bin/python3 -I
"""Chassis control of one Faultline lab node, run by that node's ipmi_sim (stdlib only).

ipmi_sim's `chassis_control` program: for Get Chassis Status it runs
`chassis.py STATE_DIR NODE get power` and reads `power:1` or `power:0`; for Chassis Control
it runs `chassis.py STATE_DIR NODE set PARM VALUE`. On failure the program prints the reason
and exits non-zero, and ipmi_sim answers the client with completion code 0xff.

ipmi_sim waits for the program (nothing else is served meanwhile), so every action only
starts what takes long, like a real BMC:

- power 0: power cut (the lab supervisor kills the node's init); returns once the node is off.
- power 1: starts the boot and returns once it has begun. A booting node counts as on, as
  for a server whose BMC has switched the power on; SSH answers a moment later.
- reset 1: power cut and boot again (the supervisor's reset), returns once the new boot has
  begun; a node that is off stays off.
- shutdown 1: ACPI soft-off: runs `shutdown -h now` inside the node, which stops its services
  cleanly and then powers the node off; returns at once (like pressing the power button).
- boot, identify: accepted and ignored.

The lab's supervisor, reached on STATE_DIR/supervisor.sock, is the only source of truth.
Every call is logged to STATE_DIR/addons/ipmi/NODE/chassis.log.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

SOCKET_NAME = "supervisor.sock"
OFF_TIMEOUT = 40.0  # the supervisor gives a node 30 s to die after SIGKILL
START_TIMEOUT = 40.0  # until a requested boot has begun (a reset powers off first)
BOOT_TIMEOUT = 120.0  # what the supervisor may take to bring SSH up; nobody waits for it
POLL = 0.01
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HookError(Exception):
    pass


class Supervisor:
    def __init__(self, state_dir: str, node: str) -> None:
        self.state_dir = state_dir
        self.node = node

    def _connect(self, timeout: float) -> socket.socket:
        # Through an open descriptor of the directory: sockaddr_un holds only 108 bytes.
        fd = os.open(self.state_dir, os.O_PATH | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.settimeout(timeout)
            sock.connect(f"/proc/self/fd/{fd}/{SOCKET_NAME}")
        except OSError as exc:
            sock.close()
            raise HookError(f"lab supervisor in {self.state_dir} is not answering: {exc}") from None
        finally:
            os.close(fd)
        return sock

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        with self._connect(timeout) as sock:
            sock.sendall(json.dumps(message).encode() + b"\n")
            raw = b""
            while not raw.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
        answer: dict[str, Any] = json.loads(raw or b"{}")
        if not answer.get("ok"):
            raise HookError(str(answer.get("error", "lab supervisor refused the request")))
        return answer

    def send_only(self, message: dict[str, Any]) -> None:
        """Ask for something long (a boot) without waiting for the answer: the supervisor
        carries the request out even when the asker has gone."""
        with self._connect(5.0) as sock:
            sock.sendall(json.dumps(message).encode() + b"\n")

    def status(self) -> dict[str, Any]:
        nodes = self.request({"command": "status"}, 10.0)["nodes"]
        if self.node not in nodes:
            raise HookError(f"no node {self.node!r} in the lab")
        status: dict[str, Any] = nodes[self.node]
        return status

    def power(self, action: str, timeout: float) -> str:
        message = {"command": "power", "node": self.node, "action": action, "timeout": timeout}
        return str(self.request(message, timeout + 5)["power"])

    def start(self, action: str) -> None:
        """Start a boot (action on / reset) and return once it has begun."""
        boots = int(self.status()["boots"])
        self.send_only(
            {"command": "power", "node": self.node, "action": action, "timeout": BOOT_TIMEOUT}
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            status = self.status()
            if int(status["boots"]) > boots:
                return
            if time.monotonic() > deadline:
                raise HookError(f"{self.node}: no boot began within {START_TIMEOUT:g} s")
            time.sleep(POLL)


def soft_off(status: dict[str, Any]) -> None:
    """Press the power button: the node's own shutdown (the lab's power helper) runs inside
    its namespaces, detaches and stops services before powering the node off."""
    pid = status.get("init_pid")
    if not pid:
        return
    argv = [
        "nsenter",
        f"--target={int(pid)}",
        "--mount",
        "--uts",
        "--net",
        "--pid",
        "--",
        "/usr/bin/env",
        "-i",
        f"PATH={NODE_PATH}",
        "HOME=/root",
        "LANG=C.UTF-8",
        "/usr/sbin/shutdown",
        "-h",
        "now",
    ]
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise HookError(f"shutdown inside the node failed (rc {done.returncode}): {detail}")


def on(status: dict[str, Any]) -> bool:
    return bool(status["power"] != "off")  # booting counts as on


def set_value(sup: Supervisor, parm: str, value: str) -> None:
    if parm == "power":
        if value not in ("0", "1"):
            raise HookError(f"invalid power value {value!r}")
        if value == "0":
            if on(sup.status()):
                sup.power("off", OFF_TIMEOUT)
        elif not on(sup.status()):
            sup.start("on")
    elif parm == "reset":
        if on(sup.status()):
            sup.start("reset")
    elif parm == "shutdown":
        status = sup.status()
        if status["power"] == "on":
            soft_off(status)
    elif parm not in ("boot", "identify"):
        raise HookError(f"invalid parameter {parm!r}")


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print("usage: chassis.py STATE_DIR NODE get|set|check [PARM [VALUE]] ...")
        return 2
    state_dir, node, op, args = argv[1], argv[2], argv[3], argv[4:]
    sup = Supervisor(state_dir, node)
    started = time.monotonic()
    output = ""
    try:
        if op == "get":
            lines = []
            for parm in args:
                if parm == "power":
                    lines.append(f"power:{int(on(sup.status()))}")
                elif parm == "boot":
                    lines.append("boot:default")
                else:
                    raise HookError(f"invalid parameter {parm!r}")
            output = "\n".join(lines)
        elif op == "set":
            if not args or len(args) % 2:
                raise HookError(f"set needs PARM VALUE pairs, got {args!r}")
            for parm, value in zip(args[::2], args[1::2], strict=True):
                set_value(sup, parm, value)
        else:  # `check` (and anything else) is not supported for chassis control
            raise HookError(f"unsupported operation {op!r}")
        rc = 0
    except (HookError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
        output, rc = f"{node}: {exc}", 1
    took = time.monotonic() - started
    _log(state_dir, node, f"{' '.join(argv[3:])} -> rc {rc} {output!r} ({took:.3f} s)")
    if output:
        print(output)
    return rc


def _log(state_dir: str, node: str, line: str) -> None:
    path = os.path.join(state_dir, "addons", "ipmi", node, "chassis.log")
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv))

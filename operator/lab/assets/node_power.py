#!/usr/bin/python3 -I
"""reboot / poweroff / halt / shutdown for Faultline lab nodes.

Bind-mounted inside each node over the target of Debian's power commands (systemctl),
so it answers to whatever name it was called by. In a child PID namespace reboot(2) ends
only that namespace: its init dies by SIGHUP (restart) or SIGINT (power off), and the lab
supervisor outside sees which one. It refuses to run anywhere but inside a lab node.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

MARKER = "/run/faultline-lab/pid-ns"  # written by the node's init into its private /run
RESTART = 0x01234567
POWER_OFF = 0x4321FEDC
DETACH_DELAY = 0.2  # lets an SSH session that ran the command report exit status 0 first
NO_SYSTEMD = (
    "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    "Failed to connect to bus: Host is down\n"
)


def inside_lab_node() -> bool:
    try:
        with open(MARKER, encoding="ascii") as f:
            expected = f.read().strip()
        return os.readlink("/proc/self/ns/pid") == expected and os.getpid() != 1
    except OSError:
        return False


def parse(tool: str, args: list[str]) -> tuple[str, bool, bool] | None:
    """(action, force, graceful) for a command line; None when it asks for nothing."""
    flags = {a for a in args if a.startswith("-")}
    force = bool(flags & {"-f", "--force", "-ff"})
    if tool == "systemctl":
        verbs = [a for a in args if not a.startswith("-")]
        verb = verbs[0] if verbs else ""
        if verb not in ("reboot", "poweroff", "halt"):
            return None
        return ("restart" if verb == "reboot" else "power-off", force, False)
    if flags & {"-c", "-k", "--wall", "--no-wall"} and tool == "shutdown":
        return None
    if tool == "reboot":
        action = "power-off" if flags & {"-p", "--poweroff", "--halt"} else "restart"
    elif tool == "shutdown":
        action = "restart" if flags & {"-r", "--reboot"} else "power-off"
    else:  # poweroff, halt
        action = "restart" if "--reboot" in flags else "power-off"
    return (action, force, tool == "shutdown")


def stop_services() -> None:
    for service in ("redis-server", "memcached"):
        subprocess.run(
            ["service", service, "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def reboot(action: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.reboot(ctypes.c_int(RESTART if action == "restart" else POWER_OFF))
    err = ctypes.get_errno()
    sys.stderr.write(f"reboot(2) failed: {os.strerror(err)}\n")
    return 1


def detach_and_reboot(action: str, graceful: bool) -> int:
    if os.fork() != 0:
        return 0
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    time.sleep(DETACH_DELAY)
    if graceful:
        stop_services()
    os._exit(reboot(action))


def main(argv: list[str]) -> int:
    tool = os.path.basename(argv[0])
    if tool not in ("reboot", "poweroff", "halt", "shutdown", "systemctl"):
        sys.stderr.write(f"{tool}: call me as reboot, poweroff, halt or shutdown\n")
        return 2
    if not inside_lab_node():
        sys.stderr.write(f"{tool}: refusing: not inside a Faultline lab node\n")
        return 1
    request = parse(tool, argv[1:])
    if request is None:
        if tool == "systemctl":
            sys.stderr.write(NO_SYSTEMD)
            return 1
        return 0
    action, force, graceful = request
    if force:
        return reboot(action)
    return detach_and_reboot(action, graceful)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Node-level commands: boot identity, reboot, shutdown, memory and CPU pressure."""

from __future__ import annotations

from faultline.drivers.shell import detached, marked, q

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"

# Leave time for the SSH command to return before the node goes away.
REBOOT = "(sleep 0.3; reboot || /sbin/reboot -f) </dev/null >/dev/null 2>&1 &"
SHUTDOWN = "(sleep 0.3; shutdown -h now || poweroff) </dev/null >/dev/null 2>&1 &"

OOM_KILLS = "awk '$1 == \"oom_kill\" {print $2}' /proc/vmstat"


def oom_hog(marker: str) -> str:
    """Grow memory until the kernel's OOM killer ends the hog; prints the hog's exit status.

    `tail` buffers a line that never ends, so it allocates until it is killed.
    """
    return f"{marked(marker)} sh -c 'exec tail /dev/zero' {q(marker)} >/dev/null 2>&1; echo $?"


STRESS_TARGETS = ("cpu", "memory", "io")


def stress(target: str, seconds: int, marker: str) -> str:
    """Start a detached stressor for `seconds`; prints its pid (a process group leader)."""
    sec = int(seconds)
    if target == "cpu":
        builtin = (
            f"for i in $(seq $(nproc)); do timeout {sec} sh -c 'while :; do :; done' & done; wait"
        )
        ng = f"stress-ng --cpu 0 --timeout {sec}s"
    elif target == "memory":
        builtin = ""
        ng = f"stress-ng --vm 1 --vm-bytes 50% --timeout {sec}s"
    elif target == "io":
        builtin = (
            f"timeout {sec} sh -c 'while :; do dd if=/dev/zero of=/tmp/.faultline-io bs=1M "
            "count=64 conv=fsync 2>/dev/null; done'; rm -f /tmp/.faultline-io"
        )
        ng = f"stress-ng --hdd 1 --timeout {sec}s"
    else:
        raise ValueError(f"stress target must be one of {', '.join(STRESS_TARGETS)}")
    if builtin:
        script = f"if command -v stress-ng >/dev/null; then {ng}; else {builtin}; fi"
    else:
        script = (
            f"command -v stress-ng >/dev/null || {{ echo 'memory stress needs stress-ng' >&2; "
            f"exit 127; }}; {ng}"
        )
    return detached(script, marker)


def has_stress_ng() -> str:
    return "command -v stress-ng >/dev/null && echo yes || echo no"

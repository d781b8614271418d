"""Per-node memory cgroups (cgroup v1), so an OOM inside a node stays inside it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from faultline.lab.system import LabError

NODE_MEMORY_LIMIT = 512 * 1024 * 1024


def memory_base() -> Path:
    """The memory cgroup this process lives in; node cgroups are created below it."""
    mount = _memory_mount()
    with open("/proc/self/cgroup", encoding="ascii") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                base = mount / path.lstrip("/")
                # Inside a cgroup namespace the path may be relative to a root we cannot see.
                return base if base.is_dir() else mount
    raise LabError("no cgroup v1 memory controller in /proc/self/cgroup")


def _memory_mount() -> Path:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = right.split()[:3]
            if fstype == "cgroup" and "memory" in options.split(","):
                return Path(left.split()[4])
    raise LabError("the cgroup v1 memory controller is not mounted")


def create(path: Path, limit: int = NODE_MEMORY_LIMIT) -> None:
    path.mkdir(exist_ok=True)
    (path / "memory.limit_in_bytes").write_text(str(limit))
    memsw = path / "memory.memsw.limit_in_bytes"
    if memsw.exists():  # only with swap accounting; keeps a hog from swapping instead
        memsw.write_text(str(limit))


def procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def kill_all(path: Path) -> None:
    """SIGKILL every process in the cgroup: all of them are lab node processes."""
    for pid in procs(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove(path: Path, timeout: float = 10.0) -> None:
    """Remove the cgroup once its killed processes are gone; idempotent."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY while dying processes are still being reaped
            if time.monotonic() > deadline:
                raise LabError(f"cannot remove cgroup {path}: {exc}") from exc
            kill_all(path)
            time.sleep(0.02)


def oom_kills(path: Path) -> int:
    """How many processes the kernel's OOM killer killed in this cgroup."""
    for line in (path / "memory.oom_control").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def join_argv(path: Path, argv: Sequence[str]) -> list[str]:
    """argv that enters the cgroup first, so everything it forks is accounted there too."""
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(path / "cgroup.procs"), *argv]

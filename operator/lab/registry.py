"""Which lab index belongs to which state dir, host-wide, so labs never share an index.

One small JSON file per claimed index under /run (the host's, gone at machine restart).
A claim is live while the process that made it runs, or while the lab's supervisor runs;
a temporary lab's claim (a test session's) lives only as long as the process that made it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from faultline.lab.layout import MAX_INDEX
from faultline.lab.state import load_state
from faultline.lab.system import LabError, ProcessId

REGISTRY = Path("/run/faultline/lab-registry")


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialises host-wide changes (claims, guard routes) across labs and processes."""
    REGISTRY.mkdir(parents=True, exist_ok=True)
    fd = os.open(REGISTRY / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Claim:
    index: int
    state_dir: Path
    owner: ProcessId | None
    temporary: bool = False

    def live(self) -> bool:
        if self.owner is not None and self.owner.alive():
            return True
        if self.temporary:
            return False
        try:
            state = load_state(self.state_dir)
        except LabError:
            return False
        if state is None or state.index != self.index:
            return False
        supervisor = state.supervisor
        return supervisor is not None and supervisor.alive()


def claims() -> dict[int, Claim]:
    found: dict[int, Claim] = {}
    if not REGISTRY.is_dir():
        return found
    for entry in REGISTRY.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = json.loads(entry.read_text())
            owner = ProcessId(data["owner_pid"], data["owner_start"])
            found[int(entry.name)] = Claim(
                int(entry.name), Path(data["state_dir"]), owner, bool(data.get("temporary"))
            )
        except (OSError, ValueError, KeyError, TypeError):
            found[int(entry.name)] = Claim(int(entry.name), Path("/nonexistent"), None)
    return found


def claim(
    state_dir: Path, index: int | None, busy: Iterable[int] = (), temporary: bool = False
) -> int:
    """Claim `index` (or the lowest free one) for `state_dir`; `busy` are indexes in use
    by kernel objects without a claim (leftovers)."""
    state_dir = state_dir.resolve()
    with host_lock():
        current = claims()
        for k, c in current.items():
            if c.state_dir == state_dir and (index is None or index == k):
                return _write(k, state_dir, temporary)
        taken = set(current) | set(busy)
        if index is not None:
            if index in taken:
                owner = current[index].state_dir if index in current else "leftover objects"
                raise LabError(f"lab index {index} is in use ({owner})")
            return _write(index, state_dir, temporary)
        for k in range(1, MAX_INDEX + 1):
            if k not in taken:
                return _write(k, state_dir, temporary)
    raise LabError(f"all {MAX_INDEX} lab indexes are in use")


def _write(index: int, state_dir: Path, temporary: bool) -> int:
    me = ProcessId.of(os.getpid())
    data = {
        "state_dir": str(state_dir),
        "owner_pid": me.pid if me else 0,
        "owner_start": me.start if me else 0,
        "temporary": temporary,
    }
    (REGISTRY / str(index)).write_text(json.dumps(data) + "\n")
    return index


def release(index: int, state_dir: Path | None = None) -> None:
    """Drop the claim (only if it still names `state_dir`, when given)."""
    with host_lock():
        current = claims().get(index)
        if current is None:
            return
        if state_dir is None or current.state_dir == state_dir.resolve():
            (REGISTRY / str(index)).unlink(missing_ok=True)

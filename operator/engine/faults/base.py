from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from faultline.engine.shell import NodeShell
from faultline.models.config import CloudConfig
from faultline.models.errors import UnsupportedActionError
from faultline.models.faults import FaultKind, FaultSpec
from faultline.models.records import Record

#: Self-restoring timers armed when the caller gave no duration (seconds).
DEFAULT_DEADMAN_SEC = 900


def marker(record: Record) -> str:
    """Marks processes we start on a node so recovery can find them after a crash."""
    return f"faultline-{record.id}"


class FaultHandler(ABC):
    kind: FaultKind
    actions: tuple[str, ...]

    def __init__(self, config: CloudConfig) -> None:
        self.config = config

    def check(self, spec: FaultSpec) -> None:
        """Refuse a spec before anything is touched (unknown action, target, bad params)."""
        if spec.action not in self.actions:
            raise UnsupportedActionError(f"{self.kind} faults", spec.action, self.actions)

    @abstractmethod
    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        """Everything recovery needs, known before acting (persisted with the intent)."""

    @abstractmethod
    async def apply(self, sh: NodeShell, record: Record) -> str:
        """Inject; may add observed previous state to the record. Returns a short output."""

    @abstractmethod
    async def recover(self, sh: NodeShell, record: Record) -> str:
        """Undo, idempotently, and verify the real state. Returns a short output."""

    async def close(self) -> None:
        """Release API clients the handler opened (SSH is the engine's)."""
        return None


def deadman_seconds(params: dict[str, Any]) -> int:
    sec = params.get("sec")
    if sec:
        return int(sec)
    return int(params.get("deadman_sec") or DEFAULT_DEADMAN_SEC)

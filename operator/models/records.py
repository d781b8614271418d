"""Records: what was done to which node, and everything needed to undo it.

A record is written (phase Injecting, with its identity) before the engine acts, so a caller
that persists records can recover after a crash by recovering every record that is not
known to be NotInjected.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from faultline.models.base import Model

MAX_EVENTS = 10


def now() -> datetime:
    return datetime.now(UTC)


class RecordPhase(StrEnum):
    PENDING = "Pending"
    INJECTING = "Injecting"
    INJECTED = "Injected"
    NOT_INJECTED = "NotInjected"
    FAILED = "Failed"
    RECOVERING = "Recovering"
    RECOVERED = "Recovered"
    RECOVER_FAILED = "RecoverFailed"


#: Phases in which the fault may be on the node, so recovery must run.
NEEDS_RECOVERY = frozenset(
    {
        RecordPhase.INJECTING,
        RecordPhase.INJECTED,
        RecordPhase.FAILED,
        RecordPhase.RECOVERING,
        RecordPhase.RECOVER_FAILED,
    }
)


class RecordEvent(Model):
    time: datetime = Field(default_factory=now)
    phase: RecordPhase
    message: str = ""


class Record(Model):
    id: str
    injection_id: str
    node: str
    address: str
    kind: str
    action: str
    target: str | None = None
    identity: dict[str, Any] = Field(default_factory=dict)
    previous: dict[str, Any] = Field(default_factory=dict)
    #: What users of the cloud see after the last step (e.g. servers' hostStatus).
    observed: dict[str, Any] = Field(default_factory=dict)
    phase: RecordPhase = RecordPhase.PENDING
    output: str = ""
    error: str | None = None
    events: list[RecordEvent] = Field(default_factory=list)

    def transition(self, phase: RecordPhase, message: str = "") -> None:
        self.phase = phase
        self.events = [*self.events, RecordEvent(phase=phase, message=message)][-MAX_EVENTS:]

    @property
    def needs_recovery(self) -> bool:
        return self.phase in NEEDS_RECOVERY


class NodeResult(Model):
    fqdn: str
    ok: bool
    phase: RecordPhase
    output: str = ""
    error: str | None = None
    record_id: str | None = None


class ActionResult(Model):
    action: str
    kind: str
    target: str | None = None
    injection_id: str
    nodes: list[NodeResult] = Field(default_factory=list)
    records: list[Record] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.nodes)

    @property
    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if not n.ok]

"""Writing a FaultInjection's status at once, coalescing concurrent writers.

The engine calls `save` after every record transition and before acting; `save` returns
only once a patch containing that change is committed. Concurrent saves from a fan-out
share one patch, so 200 nodes do not cost 400 round trips.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from faultline.models.records import Record
from faultline.models.resources import Condition, FaultInjectionStatus
from faultline.reconcile import metrics
from faultline.reconcile.kube import Kube

PLURAL = "faultinjections"


def now() -> datetime:
    """Whole seconds, like Kubernetes' own timestamps (kubectl's date columns expect that)."""
    return datetime.now(UTC).replace(microsecond=0)


class StatusWriter:
    def __init__(
        self, kube: Kube, namespace: str, name: str, uid: str, status: FaultInjectionStatus
    ):
        self.kube = kube
        self.uid = uid
        self.namespace = namespace
        self.name = name
        self.status = status
        self._lock = asyncio.Lock()
        self._changes = 0
        self._written = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key, field in FaultInjectionStatus.model_fields.items():
            alias = field.alias or key
            if getattr(self.status, key) is None:
                body[alias] = None  # a merge patch removes the field
        return body

    async def flush(self) -> None:
        metrics.PHASES.set(self.uid, self.status.phase)
        self._changes += 1
        mine = self._changes
        async with self._lock:
            if self._written >= mine:
                return  # a patch written after our change already carried it
            upto = self._changes
            await self.kube.patch_status(self.namespace, PLURAL, self.name, self.body())
            self._written = upto

    async def save(self, record: Record) -> None:
        """The engine's sink: the record object is the one in status.records."""
        if all(r is not record for r in self.status.records):
            self.status.records = [*self.status.records, record]
        await self.flush()

    async def update(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self.status, key, value)
        await self.flush()

    def condition(self, type_: str, ok: bool | None, reason: str, message: str = "") -> None:
        status: Literal["True", "False", "Unknown"] = (
            "Unknown" if ok is None else ("True" if ok else "False")
        )
        for cond in self.status.conditions:
            if cond.type == type_:
                if cond.status != status:
                    cond.last_transition_time = now()
                cond.status = status
                cond.reason = reason
                cond.message = message
                return
        self.status.conditions = [
            *self.status.conditions,
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now(),
            ),
        ]

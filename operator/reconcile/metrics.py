"""Prometheus metrics of the operator: injections by phase, actions, recover failures, durations."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from faultline.models.records import Record, RecordPhase

ACTIONS = Counter(
    "faultline_actions_total",
    "Fault actions applied to nodes, by result.",
    ["kind", "action", "result"],
)
RECOVERIES = Counter(
    "faultline_recoveries_total",
    "Recoveries of applied faults, by result.",
    ["kind", "action", "result"],
)
DURATION = Histogram(
    "faultline_action_duration_seconds",
    "Time to apply or recover one fault on one node, verification included.",
    ["kind", "action", "step"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


class PhaseCollector(Collector):
    """faultline_injections{phase}: how many FaultInjections this operator drives, by phase."""

    def __init__(self) -> None:
        self.phases: dict[str, str] = {}

    def set(self, uid: str, phase: str | None) -> None:
        if phase is None:
            self.phases.pop(uid, None)
        else:
            self.phases[uid] = phase

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "faultline_injections", "FaultInjections by phase.", labels=["phase"]
        )
        counts: dict[str, int] = {}
        for phase in self.phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in sorted(counts.items()):
            family.add_metric([phase], count)
        yield family


PHASES = PhaseCollector()
REGISTRY.register(PHASES)


async def timed(step: str, record: Record, run: Callable[[], Awaitable[Any]]) -> None:
    """Run an engine step on a record and count its outcome."""
    start = time.monotonic()
    await run()
    DURATION.labels(record.kind, record.action, step).observe(time.monotonic() - start)
    if step == "apply":
        ok = record.phase == RecordPhase.INJECTED
        ACTIONS.labels(record.kind, record.action, "ok" if ok else "failed").inc()
    else:
        ok = record.phase in (RecordPhase.RECOVERED, RecordPhase.NOT_INJECTED)
        RECOVERIES.labels(record.kind, record.action, "ok" if ok else "failed").inc()


def serve(port: int, address: str) -> None:
    start_http_server(port, addr=address)

"""FaultTarget: reach the cloud, discover what runs where, report it in status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faultline.models.errors import FaultlineError
from faultline.models.resources import Condition, FaultTargetStatus, TargetNodeStatus
from faultline.reconcile.status import now
from faultline.reconcile.targets import Targets


def _condition(type_: str, ok: bool, reason: str, message: str = "") -> Condition:
    return Condition(
        type=type_,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        last_transition_time=now(),
    )


async def discover(
    targets: Targets,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    generation: int | None,
) -> dict[str, Any]:
    """The status to write; never raises for a bad target (the status says what is wrong)."""
    status = FaultTargetStatus(observed_generation=generation)
    try:
        engine, _ = await targets.engine_for_body(namespace, name, dict(spec), rediscover=True)
    except FaultlineError as exc:
        status.conditions = [
            _condition("Discovered", False, "InvalidTarget", str(exc)),
            _condition("Ready", False, "InvalidTarget", str(exc)),
        ]
        return status.model_dump(mode="json", by_alias=True, exclude_none=True)
    checks = await engine.verify()
    placement = await engine.discover(refresh=True)
    running: dict[str, list[str]] = {}
    for key, nodes in placement.items():
        for node in nodes:
            running.setdefault(node.fqdn, []).append(key)
    nodes_status = []
    for node, check in zip(engine.nodes, checks, strict=True):
        backend = engine.power_for(node) if engine.config.power else None
        nodes_status.append(
            TargetNodeStatus(
                fqdn=node.fqdn,
                ip=node.ip,
                reachable=check.reachable,
                error=check.error,
                services=sorted(running.get(node.fqdn, [])),
                power_backend=backend.driver if backend else None,
            )
        )
    status.nodes = nodes_status
    unreachable = [c.fqdn for c in checks if not c.reachable]
    status.last_discovery_time = now()
    status.conditions = [
        _condition("Discovered", True, "Discovered", f"{len(checks)} node(s)"),
        _condition(
            "Reachable",
            not unreachable,
            "AllReachable" if not unreachable else "Unreachable",
            ", ".join(unreachable),
        ),
        _condition(
            "Ready",
            bool(checks) and not unreachable,
            "Ready" if checks and not unreachable else "NotReady",
            "" if checks else "no nodes",
        ),
    ]
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)

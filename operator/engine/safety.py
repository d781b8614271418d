"""Blast-radius limits from a target's `safety`, checked before anything is touched."""

from __future__ import annotations

from faultline.engine.nodes import Node
from faultline.models.config import SafetyConfig
from faultline.models.errors import FaultlineError
from faultline.models.faults import FaultSpec


class SafetyError(FaultlineError):
    """The injection would exceed the target's safety limits; nothing was touched."""


def is_protected(node: Node, safety: SafetyConfig) -> bool:
    if node.fqdn in safety.protected_nodes or node.ip in safety.protected_nodes:
        return True
    labels = safety.protected_labels
    return bool(labels) and all(node.labels.get(k) == v for k, v in labels.items())


def unprotected(nodes: list[Node], safety: SafetyConfig) -> list[Node]:
    return [n for n in nodes if not is_protected(n, safety)]


def check(safety: SafetyConfig, fault: FaultSpec, chosen: list[Node], total: int) -> None:
    allowed = safety.allowed_actions
    if allowed is not None and not {fault.action, f"{fault.kind}.{fault.action}"} & set(allowed):
        raise SafetyError(
            f"{fault.kind}.{fault.action} is not in safety.allowedActions ({', '.join(allowed)})"
        )
    protected = [n.fqdn for n in chosen if is_protected(n, safety)]
    if protected:
        raise SafetyError(f"{', '.join(protected)}: protected by safety (protectedNodes/Labels)")
    if safety.max_nodes is not None and len(chosen) > safety.max_nodes:
        raise SafetyError(
            f"{len(chosen)} node(s) selected; safety.maxNodes allows {safety.max_nodes}"
        )
    if safety.max_percent is not None and total and len(chosen) * 100 > safety.max_percent * total:
        share = len(chosen) * 100 // total
        raise SafetyError(
            f"{len(chosen)} of {total} node(s) ({share}%) selected; "
            f"safety.maxPercent allows {safety.max_percent}%"
        )

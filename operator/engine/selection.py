"""Which nodes an injection acts on. Fail-closed: nothing matching is an error."""

from __future__ import annotations

import random

from faultline.engine.engine import Engine
from faultline.engine.nodes import Node
from faultline.engine.safety import unprotected
from faultline.models.errors import NoNodesSelectedError
from faultline.models.faults import FaultKind
from faultline.models.resources import Selector, SelectorMode


async def candidates(engine: Engine, kind: FaultKind, target: str | None) -> list[Node]:
    """Where a fault of this kind can land: the service's / container's nodes, else all."""
    if kind in (FaultKind.SERVICE, FaultKind.CONTAINER) and target:
        return await engine.service_nodes(kind.value, target)
    return list(engine.nodes)


async def select(
    engine: Engine, kind: FaultKind, target: str | None, selector: Selector
) -> list[Node]:
    """Protected nodes are never picked; naming one explicitly is left to the safety check."""
    nodes = await candidates(engine, kind, target)
    if not selector.fqdns:
        nodes = unprotected(nodes, engine.config.safety)
    where = f"{kind} {target}" if target else "the target's nodes"
    if selector.fqdns:
        wanted = engine.resolve(selector.fqdns)
        missing = [n.fqdn for n in wanted if n not in nodes]
        if missing:
            raise NoNodesSelectedError(f"{', '.join(missing)}: not among the nodes of {where}")
        nodes = wanted
    if selector.with_service:
        running = set(await engine.service_nodes("service", selector.with_service))
        nodes = [n for n in nodes if n in running]
        where += f" with service {selector.with_service}"
    if selector.labels:
        labels = selector.labels
        nodes = [n for n in nodes if all(n.labels.get(k) == v for k, v in labels.items())]
        where += f" labelled {labels}"
    if not nodes:
        raise NoNodesSelectedError(f"no node matches: {where}")
    count = _count(selector, len(nodes))
    if count > len(nodes):
        raise NoNodesSelectedError(f"asked for {count} node(s), only {len(nodes)} in {where}")
    return sorted(random.sample(nodes, count)) if count < len(nodes) else sorted(nodes)


def _count(selector: Selector, available: int) -> int:
    if selector.mode == SelectorMode.ONE:
        return 1
    if selector.mode == SelectorMode.COUNT:
        return int(selector.value or 1)
    if selector.mode == SelectorMode.PERCENT:
        return max(1, -(-int(selector.value or 100) * available // 100))
    return available

"""From a FaultInjection spec to what the engine needs: a fault spec and a selector."""

from __future__ import annotations

from dataclasses import dataclass

from faultline.engine.faults.power import MARK_HOST_DOWN, MARKABLE
from faultline.human import parse
from faultline.models.errors import ConfigError
from faultline.models.faults import BACKEND_POWER_VERBS, GANETI_KIND_LABEL, FaultKind, FaultSpec
from faultline.models.resources import FaultInjectionSpec, Selector, SelectorMode

#: Faults that can cut the path to the node get a bounded life even without a duration:
#: their on-node timer restores the node, and the injection expires with it.
SELF_RESTORING = {
    (FaultKind.NETWORK, "disconnect"),
    (FaultKind.SERVICE, "freeze"),
    (FaultKind.SERVICE, "unplug"),
}
DEFAULT_SELF_RESTORING_SEC = 3600


@dataclass(frozen=True)
class Plan:
    fault: FaultSpec
    selector: Selector
    duration: int | None


def plan(spec: FaultInjectionSpec) -> Plan:
    """Raises SentenceError for a command that does not parse."""
    if spec.command is not None:
        sentence = parse(spec.command)
        kind = sentence.kind
        if kind == FaultKind.NODE and sentence.action in BACKEND_POWER_VERBS:
            kind = FaultKind.POWER
        params = {
            k: v for k, v in sentence.params.items() if k not in ("sec", "network_name", "binary")
        }
        target = None if kind == FaultKind.GANETI else sentence.target
        fault = FaultSpec(kind=kind, action=sentence.action, target=target, params=params)
        sel = sentence.selector
        if sel is None or sel.mode == "all":
            selector = Selector(mode=SelectorMode.ALL)
        elif sel.mode == "fqdns":
            selector = Selector(mode=SelectorMode.ALL, fqdns=list(sel.fqdns))
        else:
            selector = Selector(mode=SelectorMode(sel.mode), value=sel.value)
        if sentence.with_service:
            selector = selector.model_copy(update={"with_service": sentence.with_service})
        if kind == FaultKind.GANETI:  # "drain ganeti node on one node": among Ganeti nodes
            labels = {GANETI_KIND_LABEL: str(sentence.target)}
            selector = selector.model_copy(update={"labels": labels})
        duration = spec.duration_seconds or sentence.duration
    else:
        assert spec.fault is not None
        f = spec.fault
        fault = FaultSpec(kind=f.kind, action=f.action, target=f.target, params=dict(f.params))
        selector = spec.selector or Selector()
        duration = spec.duration_seconds
    if spec.mark_host_down:
        if fault.kind != FaultKind.POWER or fault.action not in MARKABLE:
            raise ConfigError(
                "spec.markHostDown",
                f"applies to powering nodes off ({', '.join(MARKABLE)}), not to "
                f"{fault.kind} {fault.action}",
                "remove markHostDown, or power the nodes off",
            )
        fault = fault.model_copy(update={"params": {**fault.params, MARK_HOST_DOWN: True}})
    if duration is None and (fault.kind, fault.action) in SELF_RESTORING:
        duration = DEFAULT_SELF_RESTORING_SEC
    if duration:
        fault = fault.model_copy(update={"params": {**fault.params, "sec": duration}})
    return Plan(fault, selector, duration)

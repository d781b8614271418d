"""Which handler owns which kind of fault."""

from __future__ import annotations

from faultline.engine.faults.base import FaultHandler
from faultline.engine.faults.container import ContainerFault
from faultline.engine.faults.ganeti import GanetiFault
from faultline.engine.faults.network import NetworkFault
from faultline.engine.faults.node import NodeFault
from faultline.engine.faults.nova import NovaFault
from faultline.engine.faults.power import PowerFault
from faultline.engine.faults.service import ServiceFault
from faultline.models.config import CloudConfig
from faultline.models.faults import FaultKind

_HANDLERS: dict[FaultKind, type[FaultHandler]] = {
    FaultKind.SERVICE: ServiceFault,
    FaultKind.CONTAINER: ContainerFault,
    FaultKind.NODE: NodeFault,
    FaultKind.NETWORK: NetworkFault,
    FaultKind.POWER: PowerFault,
    FaultKind.GANETI: GanetiFault,
    FaultKind.NOVA: NovaFault,
}


def handlers(config: CloudConfig) -> dict[FaultKind, FaultHandler]:
    return {kind: cls(config) for kind, cls in _HANDLERS.items()}

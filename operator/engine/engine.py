"""The engine: resolve nodes, plan records, apply and recover them with durable intent.

A caller passes a `sink` that persists a record; the engine calls it after every
transition, and always *before* acting on a node, so a crash leaves a record that says what
may be applied. The CLI keeps records in a journal file; the operator keeps them in status.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from faultline.drivers.power import PowerBackend, PowerTarget, build_backend
from faultline.drivers.services import container_commands
from faultline.drivers.shell import pattern_var, q
from faultline.drivers.ssh import SshPool
from faultline.engine.catalog import handlers
from faultline.engine.nodes import Node
from faultline.engine.shell import CommandFailedError, NodeShell, ssh_target
from faultline.models import names
from faultline.models.config import CloudConfig
from faultline.models.errors import FaultlineError, NoNodesSelectedError, UnknownNodeError
from faultline.models.faults import FaultKind, FaultSpec
from faultline.models.records import ActionResult, NodeResult, Record, RecordPhase

log = logging.getLogger(__name__)

RecordSink = Callable[[Record], Awaitable[None]]


async def _discard(record: Record) -> None:
    return None


def new_injection_id() -> str:
    return "fl-" + uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class NodeCheck:
    fqdn: str
    ip: str
    reachable: bool
    latency_ms: float | None = None
    error: str | None = None


class Engine:
    def __init__(self, config: CloudConfig, pool: SshPool | None = None) -> None:
        self.config = config
        self.pool = pool or SshPool(config.ssh)
        self._handlers = handlers(config)
        self.nodes: list[Node] = [
            Node(
                fqdn=n.fqdn,
                ip=n.ip,
                mac=n.mac,
                labels=dict(n.labels),
                ssh_port=n.ssh_port,
                ssh_user=n.ssh_user,
                bmc=n.bmc,
            )
            for n in config.nodes
        ]
        self._index = {n.fqdn: n for n in self.nodes} | {n.ip: n for n in self.nodes}
        self._placement: dict[str, set[Node]] = {}
        self._power: dict[int, PowerBackend] = {}

    @classmethod
    async def create(cls, config: CloudConfig, pool: SshPool | None = None) -> Engine:
        """An engine whose nodes include those found by the config's discovery sources."""
        from faultline.engine.discovery import discovered_config

        return cls(await discovered_config(config), pool)

    # --- nodes ---------------------------------------------------------------------------

    def resolve(self, names_or_ips: Iterable[str]) -> list[Node]:
        wanted = list(names_or_ips)
        unknown = [w for w in wanted if w not in self._index]
        if unknown:
            raise UnknownNodeError(unknown, (n.fqdn for n in self.nodes))
        return [self._index[w] for w in wanted]

    def shell(self, node: Node) -> NodeShell:
        return NodeShell(node, ssh_target(node, self.config), self.pool, self.power_for(node))

    def power_for(self, node: Node) -> PowerBackend | None:
        """The first configured power backend covering the node (built on first use)."""
        for i, power in enumerate(self.config.power):
            if i not in self._power:
                self._power[i] = build_backend(power, i)
            backend = self._power[i]
            if backend.covers(PowerTarget(node.fqdn, node.ip, node.mac, node.bmc)):
                return backend
        return None

    def _record_node(self, record: Record) -> Node:
        return self._index.get(record.node) or Node(fqdn=record.node, ip=record.address)

    async def verify(self, nodes: Iterable[Node] | None = None) -> list[NodeCheck]:
        async def one(node: Node) -> NodeCheck:
            start = time.monotonic()
            try:
                sh = self.shell(node)
                result = await sh.run("true", inline=True)
                if not result.ok:
                    raise CommandFailedError(f"`true` failed: {result.describe()}")
            except FaultlineError as exc:
                return NodeCheck(node.fqdn, node.ip, False, error=str(exc))
            return NodeCheck(node.fqdn, node.ip, True, (time.monotonic() - start) * 1000)

        return list(await asyncio.gather(*(one(n) for n in (nodes or self.nodes))))

    # --- discovery of what runs where ------------------------------------------------------

    async def discover(self, refresh: bool = False) -> dict[str, set[Node]]:
        """Which nodes run which service / hold which container (process or inspect match)."""
        if self._placement and not refresh:
            return self._placement
        probes: list[tuple[str, str]] = []
        placement: dict[str, set[Node]] = {}
        for name, svc in self.config.services.items():
            if svc.nodes:
                placement[f"service:{name}"] = set(self.resolve(svc.nodes))
                continue
            grep = svc.grep or svc.unit or name
            probes.append(
                (f"service:{name}", f'{pattern_var(grep)}; pgrep -f -- "$pat" >/dev/null')
            )
        for name, ctr in self.config.containers.items():
            if ctr.nodes:
                placement[f"container:{name}"] = set(self.resolve(ctr.nodes))
                continue
            cmds = container_commands(name, ctr)
            probes.append((f"container:{name}", f"{cmds.running()} >/dev/null 2>&1"))
        for key, _ in probes:
            placement[key] = set()
        if probes:
            script = "; ".join(f"if {probe}; then echo {q(key)}; fi" for key, probe in probes)

            async def one(node: Node) -> tuple[Node, list[str]]:
                try:
                    out = await self.shell(node).check(script, "discover services")
                except FaultlineError as exc:
                    log.warning("discovery skipped %s: %s", node.fqdn, exc)
                    return node, []
                return node, out.split()

            for node, found in await asyncio.gather(*(one(n) for n in self.nodes)):
                for key in found:
                    if key in placement:
                        placement[key].add(node)
        self._placement = placement
        return placement

    async def service_nodes(self, kind: str, name: str) -> list[Node]:
        placement = await self.discover()
        return sorted(placement.get(f"{kind}:{name}", set()))

    # --- plan / apply / recover -----------------------------------------------------------

    def check(self, spec: FaultSpec) -> None:
        self._handlers[spec.kind].check(spec)

    def plan(self, spec: FaultSpec, nodes: Iterable[Node], injection_id: str) -> list[Record]:
        names.injection_id(injection_id)
        handler = self._handlers[spec.kind]
        handler.check(spec)
        chosen = sorted(set(nodes))
        if not chosen:
            raise NoNodesSelectedError(f"no node selected for {spec.action} {spec.target or ''}")
        records = []
        for i, node in enumerate(chosen):
            record = Record(
                id=f"{injection_id}-{i}",
                injection_id=injection_id,
                node=node.fqdn,
                address=node.ip,
                kind=spec.kind.value,
                action=spec.action,
                target=spec.target,
            )
            record.identity = handler.identity(spec, record)
            records.append(record)
        return records

    async def apply(self, record: Record, sink: RecordSink = _discard) -> NodeResult:
        handler = self._handlers[_kind(record)]
        record.transition(RecordPhase.INJECTING, "intent recorded")
        await sink(record)
        try:
            output = await handler.apply(self.shell(self._record_node(record)), record)
        except FaultlineError as exc:
            record.error = str(exc)
            record.transition(RecordPhase.FAILED, str(exc))
        else:
            record.output = output
            record.error = None
            record.transition(RecordPhase.INJECTED, output)
        await sink(record)
        return _result(record)

    async def recover(self, record: Record, sink: RecordSink = _discard) -> NodeResult:
        if record.phase in (RecordPhase.RECOVERED, RecordPhase.NOT_INJECTED):
            return _result(record)
        if record.phase == RecordPhase.PENDING:
            record.transition(RecordPhase.NOT_INJECTED, "never acted on")
            await sink(record)
            return _result(record)
        handler = self._handlers[_kind(record)]
        record.transition(RecordPhase.RECOVERING, "recovering")
        await sink(record)
        try:
            output = await handler.recover(self.shell(self._record_node(record)), record)
        except FaultlineError as exc:
            record.error = str(exc)
            record.transition(RecordPhase.RECOVER_FAILED, str(exc))
        else:
            record.output = output
            record.error = None
            record.transition(RecordPhase.RECOVERED, output)
        await sink(record)
        return _result(record)

    async def inject(
        self,
        spec: FaultSpec,
        nodes: Iterable[Node],
        injection_id: str | None = None,
        sink: RecordSink = _discard,
    ) -> ActionResult:
        injection_id = injection_id or new_injection_id()
        records = self.plan(spec, nodes, injection_id)
        for record in records:
            await sink(record)
        results = await asyncio.gather(*(self.apply(r, sink) for r in records))
        return ActionResult(
            action=spec.action,
            kind=spec.kind.value,
            target=spec.target,
            injection_id=injection_id,
            nodes=list(results),
            records=records,
        )

    async def recover_all(
        self, records: Iterable[Record], sink: RecordSink = _discard
    ) -> ActionResult:
        todo = list(records)
        results = await asyncio.gather(*(self.recover(r, sink) for r in todo))
        first = todo[0] if todo else None
        return ActionResult(
            action=f"recover {first.action}" if first else "recover",
            kind=first.kind if first else "",
            target=first.target if first else None,
            injection_id=first.injection_id if first else "",
            nodes=list(results),
            records=todo,
        )

    async def close(self) -> None:
        for backend in self._power.values():
            await backend.close()
        for handler in self._handlers.values():
            await handler.close()
        await self.pool.close()


def _kind(record: Record) -> FaultKind:
    return FaultKind(record.kind)


def _result(record: Record) -> NodeResult:
    ok = record.phase in (
        RecordPhase.INJECTED,
        RecordPhase.RECOVERED,
        RecordPhase.NOT_INJECTED,
    )
    return NodeResult(
        fqdn=record.node,
        ok=ok,
        phase=record.phase,
        output=record.output,
        error=record.error,
        record_id=record.id,
    )

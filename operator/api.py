"""os-faults compatible Python API: connect(), CloudManagement, Service, Container.

The engine is asyncio; this facade runs it on a private event loop thread so callers
(Rally hooks, Tobiko, scripts) use plain blocking calls and connections stay open between
them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from faultline.engine.engine import Engine, NodeCheck, RecordSink, new_injection_id
from faultline.engine.journal import Journal
from faultline.engine.nodes import Node, NodeActions, NodeCollection
from faultline.models.config import CloudConfig, parse_config
from faultline.models.errors import (
    ActionError,
    ConfigError,
    FaultlineError,
    UnknownContainerError,
    UnknownServiceError,
)
from faultline.models.faults import BACKEND_POWER_VERBS, NOVA_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import ActionResult, Record

T = TypeVar("T")

#: NodeCollection's Ganeti verbs reach node_action as "ganeti-<action>" (shutdown and
#: reboot are also SSH node actions).
GANETI_PREFIX = "ganeti-"
CONFIG_NAMES = ("faultline", "os-faults")
CONFIG_EXTENSIONS = ("json", "yaml", "yml")
CONFIG_DIRS = (
    ".",
    "~/.config/faultline",
    "~/.config/os-faults",
    "/etc/faultline",
    "/etc/openstack",
)


class VerifyError(FaultlineError):
    def __init__(self, checks: list[NodeCheck]) -> None:
        self.checks = checks
        bad = [c for c in checks if not c.reachable]
        super().__init__(
            f"{len(bad)} of {len(checks)} node(s) unreachable: "
            + "; ".join(f"{c.fqdn}: {c.error}" for c in bad)
        )


def find_config_file() -> Path | None:
    for var in ("FAULTLINE_CONFIG", "OS_FAULTS_CONFIG"):
        if os.environ.get(var):
            return Path(os.environ[var])
    for directory in CONFIG_DIRS:
        for name in CONFIG_NAMES:
            for ext in CONFIG_EXTENSIONS:
                path = Path(directory).expanduser() / f"{name}.{ext}"
                if path.is_file():
                    return path
    return None


def load_config_file(path: str | Path) -> CloudConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"not valid YAML/JSON: {exc}") from None
    return parse_config(data, str(path))


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="faultline", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class CloudManagement(NodeActions):
    """One cloud: nodes, services, containers and the actions on them."""

    def __init__(self, config: CloudConfig, journal: Path | None = None) -> None:
        self.config = config
        self._loop = _LoopThread()
        self.engine: Engine = self._loop.run(_make_engine(config))
        self.journal = Journal(journal) if journal else None
        self._records: dict[str, Record] = {}
        #: Called with the injection's result before a `sec` hold starts (CLI progress).
        self.on_injected: Callable[[ActionResult, int], None] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self._loop.loop.is_running():
            self._loop.run(self.engine.close())
            self._loop.stop()

    def __enter__(self) -> CloudManagement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- os-faults API -------------------------------------------------------------------

    def verify(self) -> list[NodeCheck]:
        """Reach every node over SSH; raises VerifyError naming each unreachable node."""
        checks = self._loop.run(self.engine.verify())
        if not all(c.reachable for c in checks):
            raise VerifyError(checks)
        return checks

    def get_nodes(self, fqdns: Iterable[str] | None = None) -> NodeCollection:
        nodes = self.engine.nodes if fqdns is None else self.engine.resolve(fqdns)
        return NodeCollection(nodes, self)

    def get_service(self, name: str) -> Service:
        if name not in self.config.services:
            raise UnknownServiceError(name, self.config.services)
        return Service(self, name)

    def get_container(self, name: str) -> Container:
        if name not in self.config.containers:
            raise UnknownContainerError(name, self.config.containers)
        return Container(self, name)

    def discover(self) -> dict[str, list[str]]:
        """Which nodes run each service/container, freshly probed."""
        placement = self._loop.run(self.engine.discover(refresh=True))
        return {key: sorted(n.fqdn for n in nodes) for key, nodes in placement.items()}

    # --- acting --------------------------------------------------------------------------

    def _sink(self) -> RecordSink:
        journal = self.journal

        async def save(record: Record) -> None:
            self._records[record.id] = record
            if journal is not None:
                await journal.save(record)

        return save

    def act(
        self,
        spec: FaultSpec,
        nodes: Iterable[Node],
        sec: int | None = None,
        injection_id: str | None = None,
        raise_on_error: bool = True,
    ) -> ActionResult:
        """Inject; with `sec`, hold the fault that long and then recover (also on Ctrl-C)."""
        injection_id = injection_id or new_injection_id()
        if sec:
            spec = spec.model_copy(update={"params": {**spec.params, "sec": int(sec)}})
        result = self._loop.run(self.engine.inject(spec, nodes, injection_id, self._sink()))
        if sec:
            try:
                if self.on_injected is not None:
                    self.on_injected(result, sec)
                if result.ok:
                    time.sleep(sec)
            finally:
                recovered = self.recover(result.records, raise_on_error=False)
            result = result.model_copy(update={"records": recovered.records})
            if raise_on_error and not recovered.ok:
                raise ActionError(recovered)
        if raise_on_error and not result.ok:
            raise ActionError(result)
        return result

    def recover(
        self, what: ActionResult | Iterable[Record] | str | None = None, raise_on_error: bool = True
    ) -> ActionResult:
        """Undo an action (its result, its records, its injection id) or, by default, all."""
        if isinstance(what, ActionResult):
            records = what.records
        elif isinstance(what, str):
            records = [r for r in self.records() if r.injection_id == what]
        elif what is None:
            records = [r for r in self.records() if r.needs_recovery]
        else:
            records = list(what)
        result = self._loop.run(self.engine.recover_all(records, self._sink()))
        if raise_on_error and not result.ok:
            raise ActionError(result)
        return result

    def records(self) -> list[Record]:
        known = dict(self._records)
        if self.journal is not None:
            for record in self.journal.load():
                known.setdefault(record.id, record)
        return list(known.values())

    def node_action(self, nodes: NodeCollection, action: str, **params: Any) -> ActionResult:
        sec = params.pop("sec", None)
        if action.startswith(GANETI_PREFIX):
            ganeti = action.removeprefix(GANETI_PREFIX)
            spec = FaultSpec(kind=FaultKind.GANETI, action=ganeti, params=params)
        elif action in NOVA_ACTIONS:
            binary = params.pop("binary")
            spec = FaultSpec(kind=FaultKind.NOVA, action=action, target=binary, params=params)
        elif action in BACKEND_POWER_VERBS or action in ("snapshot", "revert"):
            spec = FaultSpec(kind=FaultKind.POWER, action=action, params=params)
        elif action in ("disconnect", "connect"):
            spec = FaultSpec(kind=FaultKind.NETWORK, action=action, target=params.pop("network"))
        else:
            spec = FaultSpec(kind=FaultKind.NODE, action=action, params=params)
        return self.act(spec, nodes, sec=sec)

    def nodes_running(self, kind: str, name: str) -> NodeCollection:
        return NodeCollection(self._loop.run(self.engine.service_nodes(kind, name)), self)


async def _make_engine(config: CloudConfig) -> Engine:
    return await Engine.create(config)


class _Managed:
    kind: FaultKind

    def __init__(self, cloud: CloudManagement, name: str) -> None:
        self.cloud = cloud
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def get_nodes(self) -> NodeCollection:
        """Nodes where it runs (discovered once, then cached)."""
        return self.cloud.nodes_running(self.kind.value, self.name)

    def discover_nodes(self) -> NodeCollection:
        self.cloud.discover()
        return self.get_nodes()

    def _act(
        self, action: str, nodes: NodeCollection | None, sec: int | None, **params: Any
    ) -> ActionResult:
        spec = FaultSpec(kind=self.kind, action=action, target=self.name, params=params)
        self.cloud.engine.check(spec)
        chosen = self.get_nodes() if nodes is None else nodes
        return self.cloud.act(spec, chosen, sec=sec)

    def start(self, nodes: NodeCollection | None = None, sec: int | None = None) -> ActionResult:
        return self._act("start", nodes, sec)

    def terminate(
        self, nodes: NodeCollection | None = None, sec: int | None = None
    ) -> ActionResult:
        return self._act("terminate", nodes, sec)

    def restart(self, nodes: NodeCollection | None = None, sec: int | None = None) -> ActionResult:
        return self._act("restart", nodes, sec)


class Service(_Managed):
    kind = FaultKind.SERVICE

    def kill(self, nodes: NodeCollection | None = None, sec: int | None = None) -> ActionResult:
        return self._act("kill", nodes, sec)

    def freeze(self, nodes: NodeCollection | None = None, sec: int | None = None) -> ActionResult:
        return self._act("freeze", nodes, sec)

    def unfreeze(self, nodes: NodeCollection | None = None, sec: int | None = None) -> ActionResult:
        return self._act("unfreeze", nodes, sec)

    def unplug(
        self,
        nodes: NodeCollection | None = None,
        direction: str = "ingress",
        other_port: int | None = None,
        sec: int | None = None,
    ) -> ActionResult:
        _no_other_port(other_port)
        return self._act("unplug", nodes, sec, direction=direction)

    def plug(
        self,
        nodes: NodeCollection | None = None,
        direction: str = "ingress",
        other_port: int | None = None,
        sec: int | None = None,
        injection_id: str | None = None,
    ) -> ActionResult:
        """Remove an unplug's rules: those of `injection_id`, else of the last unplug."""
        _no_other_port(other_port)
        tag = injection_id or self._last_unplug()
        return self._act("plug", nodes, sec, direction=direction, tag=tag)

    def _last_unplug(self) -> str:
        for record in reversed(self.cloud.records()):
            if record.action == "unplug" and record.target == self.name:
                return record.injection_id
        raise ConfigError(
            "injection_id", f"no unplug of {self.name} is known to plug", "pass injection_id="
        )


def _no_other_port(other_port: int | None) -> None:
    if other_port is not None:
        raise ConfigError(
            "other_port",
            "matching the peer's port is not supported",
            "leave it out: unplug drops traffic on the service's own port",
        )


class Container(_Managed):
    kind = FaultKind.CONTAINER


def connect(
    cloud_config: dict[str, Any] | CloudConfig | None = None,
    config_filename: str | Path | None = None,
    journal: str | Path | None = None,
) -> CloudManagement:
    """Connect to a cloud from a dict, a CloudConfig, a file, or the config search path."""
    if isinstance(cloud_config, CloudConfig):
        config = cloud_config
    elif cloud_config is not None:
        config = parse_config(cloud_config)
    else:
        path = Path(config_filename) if config_filename else find_config_file()
        if path is None:
            raise ConfigError(
                "config",
                "no configuration given or found",
                "pass cloud_config= or config_filename=, set FAULTLINE_CONFIG / "
                "OS_FAULTS_CONFIG, or create faultline.yaml or os-faults.yaml",
            )
        config = load_config_file(path)
    return CloudManagement(config, Path(journal) if journal else None)


def discover(cloud_config: dict[str, Any] | CloudConfig) -> dict[str, Any]:
    """Probe the cloud and return a static config with each service's nodes filled in."""
    with connect(cloud_config) as cloud:
        placement = cloud.discover()
        config = cloud.config.model_copy(deep=True)
    for name, svc in config.services.items():
        svc.nodes = placement.get(f"service:{name}", [])
    for name, ctr in config.containers.items():
        ctr.nodes = placement.get(f"container:{name}", [])
    dumped: dict[str, Any] = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped

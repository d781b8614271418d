"""Ganeti faults through RAPI: instance shutdown / startup / reboot, node drain / offline /
regular. Nothing runs over SSH: the cluster does it, and RAPI reports the result.

Which object a Faultline node is comes from its discovery labels (`ganeti.kind`,
`ganeti.name`); a node without them is named by its fqdn, and the action says whether an
instance (shutdown, startup, reboot) or a Ganeti node (drain, offline, regular) is meant.

The record's identity (cluster URL, object, name) is fixed before acting; `previous` holds
the observed state (an instance's admin_state, a node's role). Recovery brings back exactly
that state and verifies it: an instance that was down stays down, a node drained before the
fault stays drained.
"""

from __future__ import annotations

from typing import Any

from faultline.drivers.ganeti import REBOOT_TYPES, GanetiError, RapiClient, node_role
from faultline.engine.faults.base import FaultHandler
from faultline.engine.shell import CommandFailedError, NodeShell
from faultline.models.config import CloudConfig, NodeSpec
from faultline.models.errors import ConfigError
from faultline.models.faults import GANETI_ACTIONS, GANETI_KIND_LABEL, FaultKind, FaultSpec
from faultline.models.faults import GANETI_INSTANCE_ACTIONS as INSTANCE_ACTIONS
from faultline.models.faults import GANETI_NODE_ACTIONS as NODE_ACTIONS
from faultline.models.records import Record

#: The role each node action makes (Ganeti's words).
TARGET_ROLE = {"drain": "drained", "offline": "offline", "regular": "regular"}


def _running(inst: dict[str, Any]) -> bool:
    return inst.get("admin_state") == "up" and inst.get("oper_state") is True


def _stopped(inst: dict[str, Any]) -> bool:
    return inst.get("admin_state") != "up" and inst.get("oper_state") is not True


class GanetiFault(FaultHandler):
    kind = FaultKind.GANETI
    actions = GANETI_ACTIONS

    def __init__(self, config: CloudConfig) -> None:
        super().__init__(config)
        self._client: RapiClient | None = None

    @property
    def client(self) -> RapiClient:
        if self.config.ganeti is None:
            raise _no_connection()
        if self._client is None:
            self._client = RapiClient(self.config.ganeti)
        return self._client

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        if self.config.ganeti is None:
            raise _no_connection()
        if spec.action == "reboot":
            kind = spec.params.get("type", "hard")
            if kind not in REBOOT_TYPES:
                raise ConfigError(
                    "params.type", f"{kind!r} is not a reboot type", f"use {REBOOT_TYPES}"
                )
        if spec.action == "shutdown" and "timeout" in spec.params:
            timeout = spec.params["timeout"]
            if not isinstance(timeout, int) or timeout < 0:
                raise ConfigError(
                    "params.timeout", f"{timeout!r} is not a number of seconds", "e.g. timeout: 0"
                )

    def _node_spec(self, fqdn: str) -> NodeSpec | None:
        for node in self.config.nodes:
            if node.fqdn == fqdn:
                return node
        return None

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        node = self._node_spec(record.node)
        labels = node.labels if node is not None else {}
        wanted = "instance" if spec.action in INSTANCE_ACTIONS else "node"
        kind = labels.get(GANETI_KIND_LABEL, wanted)
        ident: dict[str, Any] = {
            "cluster": self.config.ganeti.url if self.config.ganeti else "",
            "object": kind,
            "name": labels.get("ganeti.name", record.node),
        }
        if spec.action == "reboot":
            ident["rebootType"] = spec.params.get("type", "hard")
        if spec.action == "shutdown" and "timeout" in spec.params:
            ident["timeout"] = int(spec.params["timeout"])
        return ident

    def _object(self, record: Record) -> tuple[str, str]:
        ident = record.identity
        kind, name = str(ident["object"]), str(ident["name"])
        wanted = "instance" if record.action in INSTANCE_ACTIONS else "node"
        if kind != wanted:
            verbs = INSTANCE_ACTIONS if wanted == "instance" else NODE_ACTIONS
            raise CommandFailedError(
                f"{record.action} acts on Ganeti {wanted}s ({', '.join(verbs)}); {record.node} "
                f"is a Ganeti {kind} (label ganeti.kind): select {wanted}s, e.g. with the "
                f"label ganeti.kind={wanted}"
            )
        return kind, name

    async def apply(self, sh: NodeShell, record: Record) -> str:
        kind, name = self._object(record)
        try:
            if kind == "instance":
                return await self._apply_instance(record, name)
            return await self._apply_node(record, name)
        except GanetiError as exc:
            raise CommandFailedError(str(exc)) from None

    async def recover(self, sh: NodeShell, record: Record) -> str:
        kind, name = self._object(record)
        try:
            if kind == "instance":
                return await self._recover_instance(record, name)
            return await self._recover_node(record, name)
        except GanetiError as exc:
            raise CommandFailedError(str(exc)) from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- instances -------------------------------------------------------------------------

    async def _apply_instance(self, record: Record, name: str) -> str:
        rapi = self.client
        inst = await rapi.instance(name)
        record.previous = {
            "adminState": inst.get("admin_state"),
            "status": inst.get("status"),
            "pnode": inst.get("pnode"),
        }
        action = record.action
        if action == "shutdown":
            if _stopped(inst):
                return f"instance {name} already down ({inst.get('status')})"
            done = await rapi.instance_shutdown(name, record.identity.get("timeout"))
            await self._expect_instance(name, up=False)
            return f"instance {name} shut down (job {done.job_id})"
        if action == "startup":
            if _running(inst):
                return f"instance {name} already running"
            done = await rapi.instance_startup(name)
            await self._expect_instance(name, up=True)
            return f"instance {name} started (job {done.job_id})"
        kind = str(record.identity.get("rebootType", "hard"))
        done = await rapi.instance_reboot(name, kind)  # a stopped instance is started
        await self._expect_instance(name, up=True)
        return f"instance {name}: {kind} reboot (job {done.job_id}); running"

    async def _recover_instance(self, record: Record, name: str) -> str:
        rapi = self.client
        previous = record.previous.get("adminState")
        if previous is None:
            # Intent recorded, then a crash before anything was observed: verify the truth.
            inst = await rapi.instance(name)
            return f"nothing observed before the crash; instance {name} is {inst.get('status')}"
        inst = await rapi.instance(name)
        if previous == "up":
            if _running(inst):
                return f"instance {name} running (as before)"
            done = await rapi.instance_startup(name)
            await self._expect_instance(name, up=True)
            return f"instance {name} started again (job {done.job_id}); running"
        if _stopped(inst):
            return f"instance {name} was down before; left down"
        done = await rapi.instance_shutdown(name)
        await self._expect_instance(name, up=False)
        return f"instance {name} was down before; shut down again (job {done.job_id})"

    async def _expect_instance(self, name: str, up: bool) -> None:
        inst = await self.client.instance(name)
        ok = _running(inst) if up else _stopped(inst)
        if not ok:
            want = "running" if up else "down"
            raise CommandFailedError(
                f"ganeti {self.client.url}: instance {name} should be {want} but is "
                f"{inst.get('status')} (admin_state {inst.get('admin_state')})"
            )

    # -- nodes -----------------------------------------------------------------------------

    async def _apply_node(self, record: Record, name: str) -> str:
        rapi = self.client
        node = await rapi.node(name)
        role = node_role(node)
        record.previous = {"role": role}
        target = TARGET_ROLE[record.action]
        if role == "master":
            raise CommandFailedError(
                f"ganeti {rapi.url}: {name} is the master; Ganeti changes the master's role "
                "only by failover (select a non-master node, e.g. label ganeti.role!=master)"
            )
        if role == target:
            return f"node {name} already {role}"
        # A dry run first (body dry_run: RAPI ignores ?dry-run=1 on role changes): Ganeti's
        # own checks refuse before anything changes.
        await rapi.set_node_role(name, target, dry_run=True)
        done = await rapi.set_node_role(name, target)
        await self._expect_role(name, target)
        return f"node {name}: {role} -> {target} (job {done.job_id})"

    async def _recover_node(self, record: Record, name: str) -> str:
        rapi = self.client
        previous = record.previous.get("role")
        now = await rapi.node_role(name)
        if previous is None:
            return f"nothing observed before the crash; node {name} is {now}"
        if now == previous:
            return f"node {name} is {now} (as before)"
        if previous == "master":
            return f"node {name} was the master; its role was never changed (now {now})"
        done = await rapi.set_node_role(name, str(previous))
        await self._expect_role(name, str(previous))
        return f"node {name}: {now} -> {previous} again (job {done.job_id})"

    async def _expect_role(self, name: str, role: str) -> None:
        now = await self.client.node_role(name)
        if now != role:
            raise CommandFailedError(
                f"ganeti {self.client.url}: node {name} should be {role} but is {now}"
            )


def _no_connection() -> ConfigError:
    return ConfigError(
        "ganeti",
        "ganeti faults need the cluster's RAPI",
        "add ganeti: {url: https://CLUSTER:5080, username: ..., passwordFile: ..., caFile: ...}",
    )

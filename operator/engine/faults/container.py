"""Container faults (docker, podman): start, terminate, restart."""

from __future__ import annotations

from typing import Any

from faultline.drivers.services import ContainerCommands, container_commands
from faultline.engine.faults.base import FaultHandler
from faultline.engine.shell import NodeShell
from faultline.models.errors import UnknownContainerError
from faultline.models.faults import CONTAINER_ACTIONS, FaultKind, FaultSpec
from faultline.models.records import Record


class ContainerFault(FaultHandler):
    kind = FaultKind.CONTAINER
    actions = CONTAINER_ACTIONS

    def _commands(self, name: str | None) -> ContainerCommands:
        if name is None or name not in self.config.containers:
            raise UnknownContainerError(str(name), self.config.containers)
        return container_commands(name, self.config.containers[name])

    def check(self, spec: FaultSpec) -> None:
        super().check(spec)
        self._commands(spec.target)

    def identity(self, spec: FaultSpec, record: Record) -> dict[str, Any]:
        cmds = self._commands(spec.target)
        return {"container": cmds.name, "driver": cmds.tool}

    async def _running(self, sh: NodeShell, cmds: ContainerCommands) -> bool:
        out = await sh.check(cmds.running(), f"inspect container {cmds.name}")
        return out.strip() == "true"

    async def _wait(self, sh: NodeShell, cmds: ContainerCommands, running: bool) -> None:
        want = "true" if running else "false"
        await sh.wait_for(
            f'[ "$({cmds.running()} 2>/dev/null)" = {want} ]',
            f"container {cmds.name} {'runs' if running else 'stopped'}",
        )

    async def apply(self, sh: NodeShell, record: Record) -> str:
        cmds = self._commands(record.target)
        was_running = await self._running(sh, cmds)
        record.previous = {"running": was_running}
        if record.action == "start":
            if not was_running:
                await sh.check(cmds.start(), f"start container {cmds.name}")
            await self._wait(sh, cmds, True)
            return "started" if not was_running else "already running"
        if record.action == "terminate":
            if was_running:
                await sh.check(cmds.terminate(), f"stop container {cmds.name}")
            await self._wait(sh, cmds, False)
            return "terminated" if was_running else "was not running"
        await sh.check(cmds.restart(), f"restart container {cmds.name}")
        await self._wait(sh, cmds, True)
        return "restarted"

    async def recover(self, sh: NodeShell, record: Record) -> str:
        cmds = self._commands(record.target)
        was_running = record.previous.get("running", True)
        if record.action == "restart":
            return "nothing to undo"
        running = await self._running(sh, cmds)
        if was_running and not running:
            await sh.check(cmds.start(), f"start container {cmds.name}")
        elif not was_running and running and record.action == "start":
            await sh.check(cmds.terminate(), f"stop container {cmds.name}")
        await self._wait(sh, cmds, bool(was_running))
        return "running" if was_running else "stopped"

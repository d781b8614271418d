"""Service and container control commands, one small class per driver.

Each driver answers with shell command strings; the engine runs them over SSH. Names were
validated by the config models; they are quoted again here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from faultline.drivers.shell import find_pids, q
from faultline.models.config import ContainerConfig, ServiceConfig


class ServiceCommands(Protocol):
    @property
    def grep(self) -> str: ...

    def start(self) -> str: ...
    def terminate(self) -> str: ...
    def restart(self) -> str: ...


@dataclass(frozen=True)
class SystemdService:
    unit: str
    grep: str

    def start(self) -> str:
        return f"systemctl start {q(self.unit)}"

    def terminate(self) -> str:
        return f"systemctl stop {q(self.unit)}"

    def restart(self) -> str:
        return f"systemctl restart {q(self.unit)}"


@dataclass(frozen=True)
class SysvService:
    unit: str
    grep: str

    def start(self) -> str:
        return f"service {q(self.unit)} start"

    def terminate(self) -> str:
        return f"service {q(self.unit)} stop"

    def restart(self) -> str:
        return f"service {q(self.unit)} restart"


@dataclass(frozen=True)
class SystemService:
    """os-faults' system_service: systemctl where systemd runs, else the init.d script."""

    unit: str
    grep: str

    def _verb(self, verb: str) -> str:
        unit = q(self.unit)
        return (
            f"if [ -d /run/systemd/system ]; then systemctl {verb} {unit}; "
            f"else service {unit} {'stop' if verb == 'stop' else verb}; fi"
        )

    def start(self) -> str:
        return self._verb("start")

    def terminate(self) -> str:
        return self._verb("stop")

    def restart(self) -> str:
        return self._verb("restart")


@dataclass(frozen=True)
class ProcessService:
    """A bare process: found by pattern, started and stopped by operator-written commands."""

    grep: str
    start_command: str
    terminate_command: str | None
    restart_command: str | None

    def start(self) -> str:
        # Detached (setsid forks) so a long-running process does not hold the SSH channel
        # open; no trailing `&`, so the command composes inside `if ...; then ...; fi`.
        return f"setsid -f sh -c {q(self.start_command)} </dev/null >/dev/null 2>&1"

    def terminate(self) -> str:
        if self.terminate_command:
            return self.terminate_command
        return f"for p in $({find_pids(self.grep)}); do kill -TERM $p; done"

    def restart(self) -> str:
        if self.restart_command:
            return self.restart_command
        return f"{self.terminate()}; sleep 1; {self.start()}"


def service_commands(name: str, config: ServiceConfig) -> ServiceCommands:
    unit = config.unit or name
    grep = config.grep or unit
    if config.driver == "process":
        assert config.start_command is not None  # guaranteed by the model
        return ProcessService(
            grep, config.start_command, config.terminate_command, config.restart_command
        )
    if config.driver == "systemd":
        return SystemdService(unit, grep)
    if config.driver == "sysv":
        return SysvService(unit, grep)
    return SystemService(unit, grep)


@dataclass(frozen=True)
class ContainerCommands:
    """docker and podman share their CLI for what we need."""

    tool: str
    name: str

    def start(self) -> str:
        return f"{self.tool} start {q(self.name)}"

    def terminate(self) -> str:
        return f"{self.tool} stop {q(self.name)}"

    def restart(self) -> str:
        return f"{self.tool} restart {q(self.name)}"

    def running(self) -> str:
        """Prints true or false; fails when the container does not exist."""
        return f"{self.tool} inspect -f '{{{{.State.Running}}}}' {q(self.name)}"


def container_commands(name: str, config: ContainerConfig) -> ContainerCommands:
    return ContainerCommands(config.driver, config.name or name)

"""Service and container control commands, one small class per driver.

Each driver answers with shell command strings; the engine runs them over SSH. Names were
validated by the config models; they are quoted again here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from faultline.drivers.shell import find_pids, q, signal_pids
from faultline.models.config import ContainerConfig, ServiceConfig


class ServiceCommands(Protocol):
    @property
    def grep(self) -> str: ...

    def start(self) -> str: ...
    def terminate(self) -> str: ...
    def restart(self) -> str: ...

    def ensure_started(self) -> str:
        """Start unless running. A service manager knows; a pattern can be fooled by any
        process that mentions the name (`tail -f memcached.log`), so managers are asked."""
        ...


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

    def ensure_started(self) -> str:
        return self.start()


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

    def ensure_started(self) -> str:
        # Many init scripts start a second copy when asked twice; LSB status (exit 0 while
        # running) answers from the pid file, not from a pattern.
        return f"{{ service {q(self.unit)} status >/dev/null 2>&1 || {self.start()}; }}"


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

    def ensure_started(self) -> str:
        unit = q(self.unit)
        return (
            f"if [ -d /run/systemd/system ]; then systemctl start {unit}; "
            f"else service {unit} status >/dev/null 2>&1 || service {unit} start; fi"
        )


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
        return signal_pids("TERM", f"$({find_pids(self.grep)})")

    def restart(self) -> str:
        if self.restart_command:
            return self.restart_command
        return f"{self.terminate()}; sleep 1; {self.start()}"

    def ensure_started(self) -> str:
        # A bare start command is not idempotent: a second one would run a second copy.
        return f'if [ -z "$({find_pids(self.grep)})" ]; then {self.start()}; fi'


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

"""Power backends: one small class per platform, idempotent verbs, typed errors.

A backend turns a node's power on and off through something other than the node itself
(a BMC, a hypervisor, a cloud API), so it still works when the node does not answer.
Backends register here by driver name; optional libraries are imported only by the
backend that needs them, so a missing one fails with a clear error at use, not at import.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from faultline.models.config import BmcSpec, PowerConfig
from faultline.models.errors import ConfigError, FaultlineError, config_error_from_pydantic

M = TypeVar("M", bound=BaseModel)


def parse_args(model: type[M], config: PowerConfig) -> M:
    """Validate a backend's `args`; a ConfigError names `args.<field>` (build_backend adds
    the `power[i].` in front)."""
    try:
        return model.model_validate(config.args)
    except ValidationError as exc:
        raise config_error_from_pydantic(exc.errors(), prefix="args") from None


def read_secret(path: str, what: str, backend: str) -> str:
    """A credential from a file; the error names the file, never its content."""
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise PowerError(f"{backend}: cannot read {what} {path}: {exc.strerror}") from None


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"


class PowerError(FaultlineError):
    """A power backend refused or failed an operation (the message names node and backend)."""


@dataclass(frozen=True)
class PowerTarget:
    """What a backend knows of a node: enough to find it on its platform."""

    fqdn: str
    ip: str
    mac: str | None = None
    bmc: BmcSpec | None = None
    labels: dict[str, str] = field(default_factory=dict)


class PowerBackend(ABC):
    """Verbs are idempotent: powering off a node that is off is a no-op that says so."""

    driver: ClassVar[str]

    def __init__(self, config: PowerConfig) -> None:
        self.config = config

    def covers(self, node: PowerTarget) -> bool:
        wanted = self.config.nodes
        if not wanted:
            return True
        return any(w in (node.fqdn, node.ip, node.mac) for w in wanted)

    @abstractmethod
    async def state(self, node: PowerTarget) -> PowerState: ...

    @abstractmethod
    async def power_off(self, node: PowerTarget) -> str:
        """Hard power off, returning once the platform reports it off."""

    @abstractmethod
    async def power_on(self, node: PowerTarget) -> str: ...

    @abstractmethod
    async def reset(self, node: PowerTarget) -> str:
        """Hard reset; a node that is off is powered on."""

    @abstractmethod
    async def shutdown(self, node: PowerTarget) -> str:
        """Graceful (ACPI / soft) shutdown, returning once off."""

    async def close(self) -> None:
        return None

    # Snapshots: only backends of hypervisors have them (libvirt).

    def _no_snapshots(self) -> PowerError:
        return PowerError(f"the {self.driver} backend cannot take snapshots (libvirt can)")

    async def snapshot(self, node: PowerTarget, name: str, suspend: bool = True) -> str:
        raise self._no_snapshots()

    async def revert(self, node: PowerTarget, name: str, resume: bool = True) -> str:
        raise self._no_snapshots()

    async def delete_snapshot(self, node: PowerTarget, name: str) -> str:
        raise self._no_snapshots()

    async def snapshots(self, node: PowerTarget) -> list[str]:
        raise self._no_snapshots()

    @staticmethod
    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking client library call without blocking the event loop."""
        return await asyncio.to_thread(fn, *args)


_BACKENDS: dict[str, type[PowerBackend]] = {}


def register(cls: type[PowerBackend]) -> type[PowerBackend]:
    _BACKENDS[cls.driver] = cls
    return cls


def _load_builtin(driver: str) -> None:
    """Import the module of a built-in backend (it registers itself)."""
    import importlib

    module = {
        "ipmi": "faultline.drivers.power_ipmi",
        "libvirt": "faultline.drivers.power_libvirt",
        "redfish": "faultline.drivers.power_redfish",
        "ganeti": "faultline.drivers.power_ganeti",
        "openstack-server": "faultline.drivers.power_openstack",
    }.get(driver)
    if module is not None:
        importlib.import_module(module)


def build_backend(config: PowerConfig, index: int = 0) -> PowerBackend:
    if config.driver not in _BACKENDS:
        try:
            _load_builtin(config.driver)
        except ImportError as exc:
            raise ConfigError(
                f"power[{index}].driver",
                f"the {config.driver} backend needs a library that is not installed ({exc.name})",
                f"install the extra for it: pip install 'faultline[{config.driver}]'",
            ) from None
    if config.driver not in _BACKENDS:
        raise ConfigError(
            f"power[{index}].driver", f"{config.driver!r} is not available yet in this version"
        )
    try:
        return _BACKENDS[config.driver](config)
    except ConfigError as exc:
        raise ConfigError(f"power[{index}].{exc.field}", exc.message, exc.fix) from None

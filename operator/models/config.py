"""How to reach one cloud: the FaultTarget spec, also the engine's config file format.

Two formats load into `CloudConfig`: the native one (camelCase or snake_case keys, the same
shape as a FaultTarget's spec) and os-faults' (`cloud_management` / `node_discover` /
`services` with `driver` + `args`), converted by `faultline.models.osfaults_config`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from faultline.models import names
from faultline.models.base import Model
from faultline.models.errors import ConfigError, config_error_from_pydantic
from faultline.models.ganeti import GanetiConnection, GanetiDiscovery
from faultline.models.openstack import OpenStackAuth, OpenStackDiscovery
from faultline.models.secrets import SecretKeyRef


class BmcSpec(Model):
    """A node's baseboard management controller (IPMI or Redfish)."""

    address: str
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password_file: str | None = None
    password_secret: SecretKeyRef | None = None


class NodeSpec(Model):
    fqdn: Annotated[str, Field(min_length=1, max_length=253)]
    ip: str
    mac: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    bmc: BmcSpec | None = None
    ssh_port: int | None = Field(default=None, ge=1, le=65535)
    ssh_user: str | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value

    @field_validator("fqdn")
    @classmethod
    def _fqdn(cls, value: str) -> str:
        return names.logical_name(value, "fqdn") if "." not in value else _hostname(value)


def _hostname(value: str) -> str:
    for part in value.split("."):
        names.logical_name(part, "fqdn")
    return value


class StaticDiscovery(Model):
    nodes: list[NodeSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> StaticDiscovery:
        seen: set[str] = set()
        for i, node in enumerate(self.nodes):
            if node.fqdn in seen:
                raise ValueError(f"nodes[{i}].fqdn {node.fqdn!r} appears twice")
            seen.add(node.fqdn)
        return self


class Discovery(Model):
    static: StaticDiscovery | None = None
    openstack: OpenStackDiscovery | None = Field(
        default=None, description="Nodes from Nova (needs the `openstack` section)."
    )
    ganeti: GanetiDiscovery | None = Field(
        default=None, description="Ganeti nodes and instances (needs the `ganeti` section)."
    )


class JumpHost(Model):
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    private_key_file: str | None = None


class SshConfig(Model):
    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    private_key_file: str | None = None
    password_file: str | None = None
    known_hosts_file: str | None = None
    insecure_skip_host_key_check: bool = False
    become: bool = False
    become_password_file: str | None = None
    jump_host: JumpHost | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    command_timeout: float = Field(default=120.0, gt=0)
    max_concurrency: int = Field(
        default=500, ge=1, description="Commands in flight at once, over all nodes."
    )
    private_key_secret: SecretKeyRef | None = None
    known_hosts_secret: SecretKeyRef | None = None
    password_secret: SecretKeyRef | None = None
    become_password_secret: SecretKeyRef | None = None

    def secret_refs(self) -> dict[str, SecretKeyRef]:
        """Secret references by the file field they stand for."""
        refs = {
            "private_key_file": self.private_key_secret,
            "known_hosts_file": self.known_hosts_secret,
            "password_file": self.password_secret,
            "become_password_file": self.become_password_secret,
        }
        return {field: ref for field, ref in refs.items() if ref is not None}


class ServicePort(Model):
    protocol: Literal["tcp", "udp"] = "tcp"
    number: int = Field(ge=1, le=65535)


ServiceDriverName = Literal["system", "systemd", "sysv", "process"]


class ServiceConfig(Model):
    driver: ServiceDriverName = "system"
    unit: str | None = None
    grep: str | None = None
    port: ServicePort | None = None
    start_command: str | None = None
    terminate_command: str | None = None
    restart_command: str | None = None
    nodes: list[str] | None = None

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None) -> str | None:
        return None if value is None else names.unit_name(value, "unit")

    @field_validator("grep")
    @classmethod
    def _grep(cls, value: str | None) -> str | None:
        return None if value is None else names.grep_pattern(value, "grep")

    @field_validator("start_command", "terminate_command", "restart_command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        return None if value is None else names.command_line(value)

    @model_validator(mode="after")
    def _process_needs_commands(self) -> ServiceConfig:
        if self.driver == "process":
            if not self.grep:
                raise ValueError("driver 'process' needs `grep` (the pattern that finds it)")
            if not self.start_command:
                raise ValueError("driver 'process' needs `startCommand`")
        return self


class ContainerConfig(Model):
    driver: Literal["docker", "podman"] = "docker"
    name: str | None = None
    nodes: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else names.container_name(value, "name")


PowerDriverName = Literal["ipmi", "libvirt", "redfish", "ganeti", "openstack-server"]


class PowerConfig(Model):
    """A power backend and the nodes it covers: by fqdn, ip, mac or name; empty = all.

    `args` are the driver's own settings, validated by the driver (e.g. libvirt's `uri`).
    """

    driver: PowerDriverName
    nodes: list[str] = Field(default_factory=list)
    args: dict[str, Any] = Field(default_factory=dict)


class SafetyConfig(Model):
    """Brakes: checked before anything is touched."""

    max_nodes: int | None = Field(
        default=None, ge=1, description="At most this many nodes per injection."
    )
    max_percent: int | None = Field(
        default=None, ge=1, le=100, description="At most this share of the nodes per injection."
    )
    allowed_actions: list[str] | None = Field(
        default=None,
        description="If set, only these actions: 'kill' (any kind) or 'service.kill'.",
    )
    protected_nodes: list[str] = Field(
        default_factory=list, description="fqdns never selected; naming one is refused."
    )
    protected_labels: dict[str, str] = Field(
        default_factory=dict, description="Nodes with all these labels are never selected."
    )
    paused: bool = Field(
        default=False,
        description="Kill switch for this target: active injections are recovered and "
        "aborted, new ones wait until it is lifted.",
    )


class CloudConfig(Model):
    discovery: Discovery = Field(default_factory=Discovery)
    ssh: SshConfig = Field(default_factory=SshConfig)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    containers: dict[str, ContainerConfig] = Field(default_factory=dict)
    networks: dict[str, str] = Field(default_factory=dict)
    power: list[PowerConfig] = Field(default_factory=list)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    openstack: OpenStackAuth | None = Field(
        default=None, description="The cloud's OpenStack APIs (discovery, nova faults)."
    )
    ganeti: GanetiConnection | None = Field(
        default=None, description="A Ganeti cluster's RAPI (discovery, ganeti faults, power)."
    )

    @field_validator("services", "containers")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            names.logical_name(key, "name")
        return value

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: dict[str, str]) -> dict[str, str]:
        for key, iface in value.items():
            names.logical_name(key, "networks")
            names.interface_name(iface, f"networks.{key}")
        return value

    @model_validator(mode="after")
    def _service_nodes_exist(self) -> CloudConfig:
        known = {n.fqdn for n in self.nodes} | {n.ip for n in self.nodes}
        if not self.nodes:
            return self
        for kind, table in (("services", self.services), ("containers", self.containers)):
            for key, item in table.items():
                for fqdn in item.nodes or []:
                    if fqdn not in known:
                        raise ValueError(f"{kind}.{key}.nodes: {fqdn!r} is not a known node")
        return self

    @model_validator(mode="after")
    def _openstack_discovery_has_auth(self) -> CloudConfig:
        if self.discovery.openstack is not None and self.openstack is None:
            raise ValueError(
                "discovery.openstack needs the `openstack` section (cloud or credentials)"
            )
        return self

    @model_validator(mode="after")
    def _ganeti_discovery_has_connection(self) -> CloudConfig:
        if self.discovery.ganeti is not None and self.ganeti is None:
            raise ConfigError(
                "discovery.ganeti",
                "needs the top-level `ganeti` section",
                "add ganeti: {url: https://CLUSTER:5080, username: ..., passwordFile: ...}",
            )
        return self

    @property
    def nodes(self) -> list[NodeSpec]:
        return self.discovery.static.nodes if self.discovery.static else []


def parse_config(data: Any, source: str = "") -> CloudConfig:
    """Validate a config mapping (native or os-faults format) into a CloudConfig."""
    from faultline.models.osfaults_config import is_osfaults_format, to_native

    if not isinstance(data, dict):
        raise ConfigError("<root>", f"expected a mapping, got {type(data).__name__}", source)
    if is_osfaults_format(data):
        data = to_native(data)
    try:
        return CloudConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error_from_pydantic(exc.errors()) from None

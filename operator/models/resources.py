"""Kubernetes resources (group faultline.dev, v1alpha1): the single source of truth.

`faultline crds` generates crds/ from these models; a test fails when the two drift.
Specs are never written by the operator (GitOps tools must stay in sync); everything it
learns goes to status.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from faultline.models.base import Model
from faultline.models.config import CloudConfig
from faultline.models.faults import ACTIONS, FaultKind
from faultline.models.records import Record

GROUP = "faultline.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

PAUSED_ANNOTATION = f"{GROUP}/paused"
FORCE_RELEASE_ANNOTATION = f"{GROUP}/force-release"
FINALIZER = f"{GROUP}/rollback"

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """'90s', '5m', '1h30m' -> seconds. Raises ValueError naming the accepted forms."""
    match = _DURATION.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 5m, 1h30m")
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


# --- FaultTarget -------------------------------------------------------------------------


class FaultTargetSpec(CloudConfig):
    """How to reach one cloud (the engine's config; SSH credentials come from Secrets)."""

    rediscovery_interval: int = Field(
        default=300, ge=10, description="Seconds between re-discoveries of the cloud."
    )

    @model_validator(mode="after")
    def _no_local_files(self) -> FaultTargetSpec:
        """A FaultTarget may not name files on the operator's own filesystem.

        Otherwise anyone allowed to create one could have the operator read, say, its
        service-account token as an SSH password and send it to a host of their choosing.
        Credentials come from Secrets in the target's namespace.
        """
        ssh = self.ssh
        found = [
            f"ssh.{_camel(name)}"
            for name in (
                "private_key_file",
                "known_hosts_file",
                "password_file",
                "become_password_file",
            )
            if getattr(ssh, name)
        ]
        if ssh.jump_host is not None and ssh.jump_host.private_key_file:
            found.append("ssh.jumpHost.privateKeyFile")
        for i, node in enumerate(self.nodes):
            if node.bmc is not None and node.bmc.password_file:
                found.append(f"discovery.static.nodes[{i}].bmc.passwordFile")
        for i, power in enumerate(self.power):
            found += [f"power[{i}].args.{k}" for k in power.args if k.lower().endswith("file")]
        if self.openstack is not None:
            os_files = ("clouds_file", "password_file", "ca_file")
            found += [f"openstack.{_camel(n)}" for n in os_files if getattr(self.openstack, n)]
        if self.ganeti is not None:
            found += [
                f"ganeti.{_camel(n)}"
                for n in ("password_file", "ca_file")
                if getattr(self.ganeti, n)
            ]
        if found:
            raise ValueError(
                f"{', '.join(found)}: a FaultTarget cannot read files on the operator; "
                "put the credential in a Secret and use the matching *Secret field"
            )
        return self


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


class TargetNodeStatus(Model):
    fqdn: str
    ip: str
    reachable: bool
    error: str | None = None
    services: list[str] = Field(default_factory=list)
    power_backend: str | None = None


class FaultTargetStatus(Model):
    nodes: list[TargetNodeStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    last_discovery_time: datetime | None = None


# --- FaultInjection ------------------------------------------------------------------------


class TargetRef(Model):
    name: str = Field(min_length=1, description="A FaultTarget in the same namespace.")


class StructuredFault(Model):
    kind: FaultKind
    action: str
    target: str | None = Field(
        default=None, description="Service, container or network name (kind-dependent)."
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _action_of_kind(self) -> StructuredFault:
        if self.action not in ACTIONS[self.kind]:
            allowed = ", ".join(ACTIONS[self.kind])
            raise ValueError(f"action {self.action!r} is not a {self.kind} action; use {allowed}")
        if self.kind in (FaultKind.SERVICE, FaultKind.CONTAINER, FaultKind.NETWORK) and not (
            self.target
        ):
            raise ValueError(f"a {self.kind} fault needs `target` (the {self.kind} name)")
        return self


class SelectorMode(StrEnum):
    ALL = "all"
    ONE = "one"
    COUNT = "count"
    PERCENT = "percent"


class Selector(Model):
    """Which nodes. Fail-closed: no match, or fewer than asked, is an error."""

    mode: SelectorMode = SelectorMode.ALL
    value: int | None = Field(default=None, ge=1, description="Count, or percent (1-100).")
    fqdns: list[str] | None = None
    with_service: str | None = None
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _value(self) -> Selector:
        if self.mode in (SelectorMode.COUNT, SelectorMode.PERCENT) and self.value is None:
            raise ValueError(f"mode {self.mode} needs `value`")
        if self.mode == SelectorMode.PERCENT and self.value is not None and self.value > 100:
            raise ValueError("a percent is at most 100")
        return self


class HttpProbe(Model):
    url: str = Field(pattern=r"^https?://", description="GET this URL.")
    success_codes: list[int] = Field(
        default_factory=lambda: list(range(200, 400)),
        description="Status codes that count as healthy (default 200-399).",
    )
    timeout_seconds: float = Field(default=2.0, gt=0)
    insecure_skip_tls_verify: bool = False


class PrometheusQuery(Model):
    url: str = Field(pattern=r"^https?://", description="Prometheus base URL.")
    query: str = Field(
        min_length=1,
        description="PromQL; fires when it returns a sample whose value is not 0, e.g. "
        '`up{job="nova-api"} == bool 0` (a bare `== 0` keeps the sample with value 0).',
    )
    timeout_seconds: float = Field(default=5.0, gt=0)


class StopCondition(Model):
    """Abort and recover the injection when this check keeps failing."""

    name: str = Field(min_length=1)
    http_get: HttpProbe | None = None
    prometheus: PrometheusQuery | None = None
    interval_seconds: float = Field(default=5.0, ge=0.5)
    failure_threshold: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_check(self) -> StopCondition:
        if (self.http_get is None) == (self.prometheus is None):
            raise ValueError(
                f"stop condition {self.name!r}: set exactly one of httpGet, prometheus"
            )
        return self


class Rollback(StrEnum):
    ALWAYS = "Always"
    NEVER = "Never"


class OverlapPolicy(StrEnum):
    WAIT = "Wait"
    FAIL = "Fail"
    ALLOW = "Allow"


class FaultInjectionSpec(Model):
    target_ref: TargetRef
    command: str | None = Field(
        default=None, description='A sentence, e.g. "kill nova-api service on one node".'
    )
    fault: StructuredFault | None = None
    selector: Selector | None = None
    duration: str | None = Field(
        default=None, description="How long the fault holds, e.g. 30s, 5m, 1h30m."
    )
    rollback: Rollback = Rollback.ALWAYS
    dry_run: bool = False
    mark_host_down: bool = False
    overlap: OverlapPolicy = Field(
        default=OverlapPolicy.WAIT,
        description="When another injection holds a fault on the same node and target.",
    )
    stop_conditions: list[StopCondition] = Field(
        default_factory=list,
        description="Checked while the fault is active; one that fails aborts and recovers.",
    )

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> FaultInjectionSpec:
        if (self.command is None) == (self.fault is None):
            raise ValueError("set exactly one of `command` (a sentence) or `fault`")
        if self.command is not None and self.selector is not None:
            raise ValueError("`selector` goes with `fault`; a `command` names its own nodes")
        return self

    @property
    def duration_seconds(self) -> int | None:
        return parse_duration(self.duration) if self.duration else None


class Phase(StrEnum):
    PENDING = "Pending"
    INJECTING = "Injecting"
    ACTIVE = "Active"
    RECOVERING = "Recovering"
    COMPLETED = "Completed"
    FAILED = "Failed"
    ABORTED = "Aborted"


FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.ABORTED})


class FaultInjectionStatus(Model):
    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    target: str | None = None
    action: str | None = None
    injection_id: str | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    records: list[Record] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    leaked: bool | None = None

"""Which resources the emulated API serves: built-in kinds and registered CRDs."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from faultline.lab.kubeapi import errors

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# DNS-1123 names, as kube-apiserver validates them.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclasses.dataclass(frozen=True)
class ResourceDef:
    """One served resource (all of its versions share one storage)."""

    group: str
    versions: tuple[str, ...]  # served versions, the preferred (storage) one first
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    scale_subresource: Mapping[str, Any] | None = None
    generation: bool = False  # maintains metadata.generation (custom resources, workloads)
    name_rule: str = "subdomain"  # "subdomain" | "label" | "any"
    schemas: Mapping[str, Mapping[str, Any] | None] = dataclasses.field(default_factory=dict)
    printer_columns: Mapping[str, tuple[Mapping[str, Any], ...]] = dataclasses.field(
        default_factory=dict
    )
    crd_name: str | None = None  # set for custom resources
    verbs: tuple[str, ...] = ALL_VERBS

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version

    @property
    def subresources(self) -> tuple[str, ...]:
        subs = []
        if self.status_subresource:
            subs.append("status")
        if self.scale_subresource is not None:
            subs.append("scale")
        return tuple(subs)

    def validate_name(self, name: str) -> str | None:
        """Return an error message if the name is not acceptable for this resource."""
        if self.name_rule == "label":
            if len(name) > 63 or not _LABEL.fullmatch(name):
                return (
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower '
                    "case alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character"
                )
        elif self.name_rule == "subdomain" and (len(name) > 253 or not _SUBDOMAIN.fullmatch(name)):
            return (
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character"
            )
        return None


def _columns(version: str, *columns: tuple[str, str, str]) -> dict[str, tuple[dict[str, Any], ...]]:
    """additionalPrinterColumns-like definitions for built-in kinds (kubectl get tables)."""
    return {version: tuple({"name": n, "type": t, "jsonPath": p} for n, t, p in columns)}


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceDef:
    return ResourceDef(
        group="",
        versions=("v1",),
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        **kw,
    )


def _grouped(
    group: str, version: str, plural: str, kind: str, namespaced: bool = True, **kw: Any
) -> ResourceDef:
    return ResourceDef(
        group=group,
        versions=(version,),
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        **kw,
    )


BUILTINS: tuple[ResourceDef, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        status_subresource=True,
        name_rule="label",
        printer_columns=_columns("v1", ("Status", "string", ".status.phase")),
    ),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret"),
    _core(
        "events",
        "Event",
        short_names=("ev",),
        name_rule="any",
        printer_columns=_columns(
            "v1",
            ("Last Seen", "date", ".lastTimestamp"),
            ("Type", "string", ".type"),
            ("Reason", "string", ".reason"),
            ("Object", "string", ".involvedObject.name"),
            ("Message", "string", ".message"),
        ),
    ),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core(
        "services", "Service", short_names=("svc",), status_subresource=True, categories=("all",)
    ),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    _core("pods", "Pod", short_names=("po",), status_subresource=True, categories=("all",)),
    _core(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        short_names=("pvc",),
        status_subresource=True,
    ),
    _core("nodes", "Node", namespaced=False, short_names=("no",), status_subresource=True),
    _grouped(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        status_subresource=True,
        generation=True,
        categories=("all",),
        scale_subresource={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
        },
    ),
    _grouped(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short_names=("sts",),
        status_subresource=True,
        generation=True,
        categories=("all",),
    ),
    _grouped(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        short_names=("ds",),
        status_subresource=True,
        generation=True,
        categories=("all",),
    ),
    _grouped(
        "batch", "v1", "jobs", "Job", status_subresource=True, generation=True, categories=("all",)
    ),
    _grouped(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        printer_columns=_columns("v1", ("Holder", "string", ".spec.holderIdentity")),
    ),
    _grouped("events.k8s.io", "v1", "events", "Event", short_names=("ev",), name_rule="any"),
    _grouped("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _grouped("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _grouped(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        namespaced=False,
        name_rule="any",
    ),
    _grouped(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
        name_rule="any",
    ),
    _grouped(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short_names=("pdb",),
        status_subresource=True,
        generation=True,
    ),
    _grouped(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        status_subresource=True,
        generation=True,
    ),
)

CRD_GROUP = "apiextensions.k8s.io"
CRD_PLURAL = "customresourcedefinitions"


class Registry:
    """Resources by (group, plural); lookups by (group, version, plural)."""

    def __init__(self, resources: Iterable[ResourceDef] = BUILTINS) -> None:
        self._by_name: dict[tuple[str, str], ResourceDef] = {}
        for rd in resources:
            self.add(rd)

    def add(self, rd: ResourceDef) -> None:
        self._by_name[rd.group, rd.plural] = rd

    def remove(self, group: str, plural: str) -> ResourceDef | None:
        return self._by_name.pop((group, plural), None)

    def get(self, group: str, plural: str) -> ResourceDef | None:
        return self._by_name.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceDef | None:
        rd = self._by_name.get((group, plural))
        return rd if rd is not None and version in rd.versions else None

    def __iter__(self) -> Iterator[ResourceDef]:
        return iter(list(self._by_name.values()))

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions (preferred first), excluding the core group."""
        result: dict[str, list[str]] = {}
        for rd in self._by_name.values():
            if rd.group:
                versions = result.setdefault(rd.group, [])
                for version in rd.versions:
                    if version not in versions:
                        versions.append(version)
        for versions in result.values():
            versions.sort(key=_version_priority)
        return result


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    rank = {"alpha": 2, "beta": 1, None: 0}[stage]
    return (rank, -int(major), -int(minor or 0))


def resource_from_crd(crd: Mapping[str, Any]) -> ResourceDef:
    """Build a served resource from a CRD body; raise 422 Invalid if it is malformed."""
    meta = crd.get("metadata") or {}
    name = meta.get("name") or ""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    kind = names.get("kind") or ""
    causes: list[tuple[str, str]] = []
    if not group:
        causes.append(("spec.group", "Required value"))
    if not plural:
        causes.append(("spec.names.plural", "Required value"))
    if not kind:
        causes.append(("spec.names.kind", "Required value"))
    if plural and group and name != f"{plural}.{group}":
        causes.append(
            ("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(
            (
                "spec.scope",
                f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"',
            )
        )
    versions = [v for v in spec.get("versions") or [] if isinstance(v, Mapping)]
    if not versions:
        causes.append(
            (
                "spec.versions",
                "Required value: must have exactly one version marked as storage version",
            )
        )
    storage = [v for v in versions if v.get("storage")]
    if versions and len(storage) != 1:
        causes.append(
            (
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    if causes:
        raise errors.invalid("CustomResourceDefinition", CRD_GROUP, name, causes)

    served = [v for v in versions if v.get("served", True)]
    storage_version = storage[0]["name"]
    ordered = sorted((v["name"] for v in served), key=_version_priority)
    if storage_version in ordered:  # storage first: it is what objects are kept as
        ordered.remove(storage_version)
        ordered.insert(0, storage_version)
    schemas: dict[str, Mapping[str, Any] | None] = {}
    columns: dict[str, tuple[Mapping[str, Any], ...]] = {}
    status_sub = False
    scale_sub: Mapping[str, Any] | None = None
    top_subresources = spec.get("subresources") or {}
    top_schema = (spec.get("validation") or {}).get("openAPIV3Schema")
    for v in versions:
        schemas[v["name"]] = (v.get("schema") or {}).get("openAPIV3Schema") or top_schema
        columns[v["name"]] = tuple(v.get("additionalPrinterColumns") or ())
        subs = v.get("subresources") or top_subresources
        if v["name"] == storage_version:
            status_sub = "status" in subs
            scale_sub = subs.get("scale")
    return ResourceDef(
        group=group,
        versions=tuple(ordered) or (storage_version,),
        plural=plural,
        singular=names.get("singular") or kind.lower(),
        kind=kind,
        namespaced=scope == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status_subresource=status_sub,
        scale_subresource=scale_sub,
        generation=True,
        name_rule="subdomain",
        schemas=schemas,
        printer_columns=columns,
        crd_name=name,
    )

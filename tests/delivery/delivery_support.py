"""Helpers for the delivery tests: charts, manifest validation, RBAC, Lua, the emulator."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

helm = pytest.importorskip(
    "helm_python", reason="the delivery tests need the extra: pip install -e '.[delivery]'"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="the delivery tests need the extra: pip install -e '.[delivery]'"
)

from faultline.models import crds  # noqa: E402  (after the skips)

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"
OPERATOR_CHART = CHARTS / "faultline"
CRDS_CHART = CHARTS / "faultline-crds"
EXAMPLES = REPO / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BIN = Path(sys.executable).parent

RELEASE = "faultline"
NAMESPACE = "faultline-system"
#: The oldest Kubernetes the charts declare (kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

#: Values sets every rendering test runs with (the issue's list, and a few edges).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-wide": {"rbac": {"secretNames": ["lab-ssh", "bmc-credentials"]}},
    "namespaced-2": {"watchNamespaces": ["lab", "chaos"], "rbac": {"secretNames": ["lab-ssh"]}},
    "replicas-3-peering": {"replicaCount": 3, "rbac": {"secretNames": ["lab-ssh"]}},
    "servicemonitor": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}
    },
    "namespaced-peering-all-secrets": {
        "replicaCount": 2,
        "watchNamespaces": ["lab", "chaos"],
        "rbac": {"allSecretsInWatchedNamespaces": True},
    },
    "no-metrics-digest-kill-switch": {
        "killSwitch": True,
        "metrics": {"enabled": False},
        "image": {"repository": "registry.example.com/faultline", "digest": "sha256:" + "a" * 64},
    },
}


# --- rendering --------------------------------------------------------------------------------


def render(
    chart: Path, values: Mapping[str, Any] | None = None, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """The chart's manifests (NOTES.txt and empty documents left out), in template order."""
    with helm.Chart.load(str(chart)) as loaded:
        out = loaded.render(dict(values or {}), name=RELEASE, namespace=namespace)
    docs: list[dict[str, Any]] = []
    for path in sorted(out):
        if path.endswith((".yaml", ".yml")):
            docs.extend(d for d in yaml.safe_load_all(out[path]) if d)
    return docs


def one(docs: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return dict(found[0])


def kinds(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [d["kind"] for d in docs]


def container(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment")
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(operator)


# --- validation of manifests ------------------------------------------------------------------


def _nullable_type(
    validator: Any, types: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if instance is None and schema.get("nullable"):
        return
    yield from jsonschema.Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


#: OpenAPI 3.0 schemas as kube-apiserver checks them: Draft 4 plus `nullable`.
OpenAPIValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"type": _nullable_type}
)


@dataclass
class CustomKinds:
    """openAPIV3Schemas of custom kinds, by (apiVersion, kind), taken from CRD manifests."""

    schemas: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            self.schemas[key] = version["schema"]["openAPIV3Schema"]

    def errors(self, doc: Mapping[str, Any]) -> list[str]:
        key = (doc["apiVersion"], doc["kind"])
        if key not in self.schemas:
            return [f"no CRD serves {key}"]
        body = {k: v for k, v in doc.items() if k != "metadata"}
        schema = self.schemas[key]
        validator = OpenAPIValidator(schema)
        found = [
            f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(body)
        ]
        fields = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
        return found + list(_unknown_fields(fields, schema, ""))


def _unknown_fields(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """Strict field validation (kubectl's default): fields the schema does not know are
    errors, not silently pruned."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, Mapping):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if props is not None and key in props:
                yield from _unknown_fields(item, props[key], where)
            elif isinstance(extra, Mapping):
                yield from _unknown_fields(item, extra, where)
            elif props is not None:
                yield f"{where}: unknown field"
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            yield from _unknown_fields(item, schema["items"], f"{path}[{i}]")


def custom_kinds() -> CustomKinds:
    """Faultline's CRDs (from the models), kopf's peering CRDs (from the CRD chart) and the
    ServiceMonitor subset in fixtures/."""
    known = CustomKinds()
    for crd in crds.crds():
        known.add(crd)
    for path in (CRDS_CHART / "files" / "kopf").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                known.add(doc)
    for doc in yaml.safe_load_all((FIXTURES / "servicemonitor-crd.yaml").read_text()):
        if doc:
            known.add(doc)
    return known


def validation_errors(doc: Mapping[str, Any], known: CustomKinds) -> list[str]:
    """What kube-apiserver would refuse: kubernetes-validate (strict: unknown fields are
    errors) for built-in kinds at each supported version; the CRD's schema for custom ones."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if (doc["apiVersion"], doc["kind"]) in known.schemas:
        return [f"{where}: {e}" for e in known.errors(doc)]
    problems = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(copy.deepcopy(dict(doc)), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            problems.append(f"{where} (Kubernetes {version}) {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
    return problems


# --- RBAC ------------------------------------------------------------------------------------

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update"}


@dataclass(frozen=True)
class Call:
    """One API request as the RBAC authorizer sees it."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource}{named}{where}"


def calls(requests: Iterable[Any]) -> list[Call]:
    """Resource requests (discovery and other non-resource URLs left out: every
    authenticated user may read those)."""
    out = []
    for request in requests:
        if request.resource is None:
            continue
        method = str(request.method.value if hasattr(request.method, "value") else request.method)
        if method == "GET":
            watch = request.params.get("watch") in ("true", "1") or "/watch/" in str(request.url)
            verb = "get" if request.name else ("watch" if watch else "list")
        elif method == "DELETE":
            verb = "delete" if request.name else "deletecollection"
        else:
            verb = _VERBS[method]
        resource = request.resource.plural
        if request.subresource:
            resource += f"/{request.subresource}"
        out.append(Call(verb, request.resource.group, resource, request.namespace, request.name))
    return out


def _matches(rule: Mapping[str, Any], call: Call) -> bool:
    if not {"*", call.group} & set(rule.get("apiGroups", [])):
        return False
    if not {"*", call.resource} & set(rule.get("resources", [])):
        return False
    if not {"*", call.verb} & set(rule.get("verbs", [])):
        return False
    names = rule.get("resourceNames")
    if names:  # never grants list, watch, create or deletecollection (no name to match)
        return call.name in names and call.verb not in ("list", "watch", "create")
    return True


@dataclass
class Grants:
    """The rules bound to one ServiceAccount by a set of rendered manifests."""

    cluster: list[dict[str, Any]] = field(default_factory=list)
    namespaced: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, docs: list[dict[str, Any]], account: str, namespace: str) -> Grants:
        roles = {
            (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs
        }
        grants = cls()
        for binding in docs:
            if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
                continue
            subjects = binding.get("subjects") or []
            if not any(
                s["kind"] == "ServiceAccount"
                and s["name"] == account
                and s.get("namespace") == namespace
                for s in subjects
            ):
                continue
            ref = binding["roleRef"]
            scope = binding["metadata"].get("namespace")
            role_ns = scope if ref["kind"] == "Role" else None
            role = roles[(ref["kind"], role_ns, ref["name"])]
            if binding["kind"] == "ClusterRoleBinding":
                grants.cluster.extend(role["rules"])
            else:
                grants.namespaced.setdefault(scope, []).extend(role["rules"])
        return grants

    def rules_for(self, call: Call) -> list[dict[str, Any]]:
        rules = list(self.cluster)
        if call.namespace:
            rules += self.namespaced.get(call.namespace, [])
        return rules

    def allows(self, call: Call) -> bool:
        return any(_matches(rule, call) for rule in self.rules_for(call))

    def granted(self) -> set[tuple[str, str, str]]:
        """(group, resource, verb) triples any rule grants."""
        out = set()
        for rule in self.cluster + [r for rules in self.namespaced.values() for r in rules]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((group, resource, verb))
        return out


# --- Lua (Argo CD health scripts) ---------------------------------------------------------------


def lua_interpreters() -> list[str]:
    """Debian's Lua interpreters found here. Argo CD runs gopher-lua (Lua 5.1 semantics);
    lua5.1 is the closest, lua5.4 catches what newer Lua refuses."""
    return [name for name in ("lua5.1", "lua5.4") if shutil.which(name)]


def lua_literal(value: Any) -> str:
    """A JSON-like value as a Lua table constructor (null -> nil: Argo CD drops nulls)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = re.sub(r'[\\"\n\r\x00]', lambda m: f"\\{ord(m.group()):03d}", value)
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, Mapping):
        items = ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def run_health(interpreter: str, script: str, obj: Mapping[str, Any], tmp: Path) -> dict[str, str]:
    """Run an Argo CD health script on `obj` the way Argo CD does: `obj` global, the script's
    return value is the health (status, message)."""
    chunk = tmp / "health.lua"
    chunk.write_text(script)
    harness = tmp / "harness.lua"
    harness.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local f = assert(loadfile({lua_literal(str(chunk))}))\n"
        "local hs = f()\n"
        'io.write(tostring(hs.status), "\\t", tostring(hs.message))\n'
    )
    done = subprocess.run(
        [interpreter, str(harness)], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, f"{interpreter}: {done.stderr}"
    status, _, message = done.stdout.partition("\t")
    return {"status": status, "message": message}

"""The examples beyond the lab (examples/*.yaml, examples/argocd/chaos/): valid for the CRD
schema and the models, and every fault fits its target -- the names it uses exist, the
selection finds nodes, the target's safety limits let it through, a power backend covers
each node."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from delivery_support import EXAMPLES, custom_kinds
from pydantic import BaseModel

from faultline.engine import safety
from faultline.engine.engine import Engine
from faultline.engine.selection import select
from faultline.human import parse
from faultline.lab.kubeapi import KubeAPI
from faultline.models import crds
from faultline.models.faults import FaultKind
from faultline.models.resources import API_VERSION, FaultInjectionSpec, FaultTargetSpec
from faultline.models.schedule import FaultScheduleSpec
from faultline.reconcile.plan import plan

FOLDERS = [EXAMPLES, EXAMPLES / "argocd" / "chaos"]
FILES = [p for folder in FOLDERS for p in sorted(folder.glob("*.yaml"))]
MODELS: dict[str, type[BaseModel]] = {
    "FaultTarget": FaultTargetSpec,
    "FaultInjection": FaultInjectionSpec,
    "FaultSchedule": FaultScheduleSpec,
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

#: Where the example clouds run what (discovery finds this on a real cloud; here it is the
#: assumption the examples are written for), by target: service or container -> fqdns.
PLACEMENT: dict[str, dict[str, list[str]]] = {
    "devstack": {
        "service:nova-compute": ["devstack-ctl", "devstack-cpu1"],
        "*": ["devstack-ctl"],
    },
    "universal": {
        "service:nova-compute": ["cmp1.cloud.example.com", "cmp2.cloud.example.com"],
        "container:nova-compute": ["cmp1.cloud.example.com", "cmp2.cloud.example.com"],
        "service:neutron-l3-agent": ["net1.cloud.example.com", "net2.cloud.example.com"],
        "container:neutron-l3-agent": ["net1.cloud.example.com", "net2.cloud.example.com"],
        "*": ["ctl1.cloud.example.com", "ctl2.cloud.example.com", "ctl3.cloud.example.com"],
    },
    "ganeti-cloud": {
        "*": ["ctl1.ganeti.example.com", "ctl2.ganeti.example.com", "ctl3.ganeti.example.com"],
    },
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _name(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


DOCS = [(p, d) for p in FILES for d in _docs(p)]


def test_there_is_one_of_each() -> None:
    kinds = {(d["kind"], _name(p)) for p, d in DOCS}
    families = set()
    for _, doc in DOCS:
        spec = doc["spec"]
        if doc["kind"] == "FaultInjection":
            families.add(plan(FaultInjectionSpec.model_validate(spec)).fault.kind)
    assert families == set(FaultKind), f"missing: {set(FaultKind) - families}"
    assert ("FaultTarget", "devstack-target.yaml") in kinds
    assert ("FaultTarget", "universal-target.yaml") in kinds
    assert any(k == "FaultSchedule" for k, _ in kinds)


@pytest.mark.parametrize(("path", "doc"), DOCS, ids=[_name(p) for p, _ in DOCS])
def test_example_is_valid(path: Path, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == API_VERSION
    assert doc["kind"] in MODELS
    assert _DNS_SUBDOMAIN.match(doc["metadata"]["name"])
    assert "namespace" not in doc["metadata"], "kubectl -n / Argo CD decide the namespace"
    if doc["kind"] != "FaultTarget":  # `kubectl delete -f x.yaml` deletes x
        assert doc["metadata"]["name"] == path.stem
    assert custom_kinds().errors(doc) == [], f"{_name(path)}: the API server would refuse it"
    MODELS[doc["kind"]].model_validate(doc["spec"])
    text = path.read_text()  # snake_case keys pass the models but the API server prunes them
    assert not re.search(r"^\s*-?\s*[a-z]+_[a-z_]+:", text, re.MULTILINE), _name(path)
    assert text.startswith("#"), "every example says what it does"


def _targets(folder: Path) -> dict[str, FaultTargetSpec]:
    return {
        d["metadata"]["name"]: FaultTargetSpec.model_validate(d["spec"])
        for p in sorted(folder.glob("*.yaml"))
        for d in _docs(p)
        if d["kind"] == "FaultTarget"
    }


def _engine(name: str, target: FaultTargetSpec) -> Engine:
    engine = Engine(target)
    placement = PLACEMENT[name]
    table: dict[str, set[Any]] = {}
    for kind, names in (("service", target.services), ("container", target.containers)):
        for service in names:
            key = f"{kind}:{service}"
            table[key] = set(engine.resolve(placement.get(key, placement["*"])))
    engine._placement = table  # discovery's answer, without SSH
    return engine


FAULTS = [(p, d) for p, d in DOCS if d["kind"] in ("FaultInjection", "FaultSchedule")]


@pytest.mark.parametrize(("path", "doc"), FAULTS, ids=[_name(p) for p, _ in FAULTS])
def test_fault_fits_its_target(path: Path, doc: dict[str, Any]) -> None:
    """What the operator does before touching a node, against the example's own target:
    parse, check the fault, select nodes, apply the safety limits, plan records."""
    raw = doc["spec"] if doc["kind"] == "FaultInjection" else doc["spec"]["template"]["spec"]
    spec = FaultInjectionSpec.model_validate(raw)
    assert spec.duration_seconds, f"{_name(path)}: an example should say how long"
    if spec.command is not None:
        assert parse(spec.command).duration is None, "say how long in spec.duration"
    targets = _targets(path.parent)
    assert spec.target_ref.name in targets, f"no FaultTarget {spec.target_ref.name} next to it"
    target = targets[spec.target_ref.name]
    engine = _engine(spec.target_ref.name, target)
    the_plan = plan(spec)
    fault = the_plan.fault
    engine.check(fault)

    async def choose() -> list[Any]:
        nodes = await select(engine, fault.kind, fault.target, the_plan.selector)
        safety.check(target.safety, fault, nodes, len(engine.nodes))
        return nodes

    for _ in range(5):  # selection is random among the candidates
        nodes = asyncio.run(choose())
        records = engine.plan(fault, nodes, "fi-example")
        assert records and all(r.identity is not None for r in records)
        if fault.kind == FaultKind.POWER:  # a backend covers each node (PowerBackend.covers)
            for node in nodes:
                assert any(
                    not p.nodes or {node.fqdn, node.ip, node.mac} & set(p.nodes)
                    for p in target.power
                ), f"no power backend covers {node.fqdn}"


def test_power_backends_accept_their_args() -> None:
    """The drivers validate their own `args` (e.g. libvirt's uri) when built."""
    from faultline.drivers.power import build_backend
    from faultline.models.errors import ConfigError

    missing = []
    for folder in FOLDERS:
        for target in _targets(folder).values():
            for i, power in enumerate(target.power):
                try:
                    assert build_backend(power, i).driver == power.driver
                except ConfigError as exc:
                    if "not installed" not in exc.message:
                        raise
                    missing.append(power.driver)  # pip install -e '.[power]'
    if missing:
        pytest.skip(f"power libraries not installed for {sorted(set(missing))}")


def test_examples_apply_to_the_api() -> None:
    """`kubectl apply -f` each folder into its own namespace; what is stored reads back."""
    with KubeAPI() as api:
        for manifest in crds.crds():
            api.apply_crd(manifest)
        for folder in FOLDERS:
            namespace = folder.name if folder != EXAMPLES else "examples"
            api.ensure_namespace(namespace)
            for path in sorted(folder.glob("*.yaml")):
                for doc in _docs(path):
                    doc["metadata"]["namespace"] = namespace
                    [stored] = api.apply(doc)
                    MODELS[stored["kind"]].model_validate(stored["spec"])
        assert len(api.list(API_VERSION, "FaultInjection")) == sum(
            1 for _, d in DOCS if d["kind"] == "FaultInjection"
        )


def test_examples_readme_lists_them() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    listed = FILES + sorted((EXAMPLES / "argocd").glob("*.yaml"))
    missing = [_name(p) for p in listed if f"`{_name(p)}`" not in readme]
    assert missing == []

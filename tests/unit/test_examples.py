"""Every example under examples/ is a valid object: by the CRD schema, by the models, and
against the lab target it names (services, networks, nodes that exist there)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_crds import CRDS, MODELS, schema_errors

from faultline.human import parse
from faultline.lab.kubeapi import KubeAPI
from faultline.models import crds
from faultline.models.faults import FaultKind
from faultline.models.resources import API_VERSION, FaultInjectionSpec, FaultTargetSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted((EXAMPLES / "lab").rglob("*.yaml")) + sorted((EXAMPLES / "lab").rglob("*.yml"))
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _name(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


DOCS = [(path, doc) for path in FILES for doc in _docs(path)]


def _lab_target() -> FaultTargetSpec:
    [doc] = _docs(EXAMPLES / "lab" / "target.yaml")
    return FaultTargetSpec.model_validate(doc["spec"])


def test_the_examples_exist() -> None:
    names = {_name(p) for p in FILES}
    assert {
        "lab/target.yaml",
        "lab/kill-memcached.yaml",
        "lab/disconnect-management.yaml",
        "lab/poweroff-ipmi.yaml",
        "lab/freeze-redis.yaml",
        "lab/unplug-memcached.yaml",
    } <= names
    readme = (EXAMPLES / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in readme, f"examples/README.md does not describe {name}"


@pytest.mark.parametrize(("path", "doc"), DOCS, ids=[f"{_name(p)}" for p, _ in DOCS])
def test_example_is_valid(path: Path, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == API_VERSION
    assert doc["kind"] in CRDS, f"{_name(path)}: unknown kind {doc['kind']}"
    assert _DNS_SUBDOMAIN.match(doc["metadata"]["name"])
    if doc["kind"] == "FaultInjection":  # `kubectl delete -f x.yaml` deletes x
        assert doc["metadata"]["name"] == path.stem
    assert schema_errors(doc) == [], f"{_name(path)}: the API server would refuse it"
    spec_model, _ = MODELS[doc["kind"]]
    spec_model.model_validate(doc["spec"])
    # Only camelCase keys: snake_case ones pass the models but the API server prunes them.
    text = path.read_text()
    assert not re.search(r"^\s*-?\s*[a-z]+_[a-z_]+:", text, re.MULTILINE), _name(path)


INJECTIONS = [(p, d) for p, d in DOCS if d["kind"] == "FaultInjection"]


@pytest.mark.parametrize(("path", "doc"), INJECTIONS, ids=[_name(p) for p, _ in INJECTIONS])
def test_injection_fits_the_lab_target(path: Path, doc: dict[str, Any]) -> None:
    target = _lab_target()
    targets = {d["metadata"]["name"] for p, d in DOCS if d["kind"] == "FaultTarget"}
    spec = FaultInjectionSpec.model_validate(doc["spec"])
    assert spec.target_ref.name in targets
    assert spec.duration_seconds, f"{_name(path)}: an example should say how long"
    fqdns = {n.fqdn for n in target.nodes}
    if spec.command is not None:
        sentence = parse(spec.command)
        assert sentence.duration is None, "say how long in spec.duration, not in the sentence"
        kind, name = sentence.kind, sentence.target
        if sentence.selector is not None:
            assert set(sentence.selector.fqdns) <= fqdns
    else:
        assert spec.fault is not None
        kind, name = spec.fault.kind, spec.fault.target
        if spec.selector is not None:
            assert set(spec.selector.fqdns or ()) <= fqdns
            if spec.selector.with_service:
                assert spec.selector.with_service in target.services
    known: dict[FaultKind, Mapping[str, Any]] = {
        FaultKind.SERVICE: target.services,
        FaultKind.CONTAINER: target.containers,
        FaultKind.NETWORK: target.networks,
    }
    if kind in known:
        assert name in known[kind], f"{_name(path)}: no {kind} {name!r} in the lab target"
    if kind == FaultKind.POWER:
        assert target.power, f"{_name(path)}: the lab target has no power backend"


def test_lab_target_matches_the_lab() -> None:
    target = _lab_target()
    assert [(n.fqdn, n.ip) for n in target.nodes] == [
        ("node1", "10.251.1.11"),
        ("node2", "10.251.1.12"),
        ("node3", "10.251.1.13"),
    ]
    assert target.ssh.private_key_secret is not None
    assert target.ssh.known_hosts_secret is not None
    assert (target.ssh.private_key_secret.name, target.ssh.private_key_secret.key) == (
        "lab-ssh",
        "id_ed25519",
    )
    assert target.ssh.known_hosts_secret.key == "known_hosts"
    assert not target.ssh.insecure_skip_host_key_check
    assert target.services["memcached"].driver == "sysv"
    assert target.services["memcached"].port is not None
    assert target.services["memcached"].port.number == 11211
    assert target.services["redis"].unit == "redis-server"
    assert target.services["redis"].port is not None
    assert target.services["redis"].port.number == 6379
    assert target.networks == {"management": "eth1"}
    assert target.containers["web"].driver == "podman"


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        for manifest in crds.crds():
            api.apply_crd(manifest)
        yield api


def test_examples_apply_to_the_api(kubeapi: KubeAPI) -> None:
    """`kubectl apply -f examples/lab/` against the emulator; what it stores reads back."""
    for path in FILES:
        for obj in kubeapi.apply(path.read_text()):
            spec_model, _ = MODELS[obj["kind"]]
            spec_model.model_validate(obj["spec"])
    names = {o["metadata"]["name"] for o in kubeapi.list(API_VERSION, "FaultInjection")}
    assert {"kill-memcached", "disconnect-management", "freeze-redis"} <= names

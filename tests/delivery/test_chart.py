"""The Helm charts: lint, values schema, rendered manifests (valid, hardened, least
privilege), the CRD chart against the models, and installs into the API emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from delivery_support import (
    CRDS_CHART,
    NAMESPACE,
    OPERATOR_CHART,
    RELEASE,
    VALUE_SETS,
    Grants,
    container,
    custom_kinds,
    helm,
    kinds,
    one,
    render,
    validation_errors,
)

from faultline.cli import run_operator
from faultline.lab.kubeapi import KubeAPI
from faultline.models import crds

SETS = list(VALUE_SETS)
CHARTS = [OPERATOR_CHART, CRDS_CHART]
#: kopf's peering kinds, by scope of the operator.
PEERING = {True: "ClusterKopfPeering", False: "KopfPeering"}


def _values(name: str) -> dict[str, Any]:
    return json.loads(json.dumps(VALUE_SETS[name]))


def _pyproject_version() -> str:
    text = (OPERATOR_CHART.parents[1] / "pyproject.toml").read_text()
    return next(
        line.split("=", 1)[1].strip().strip('"')
        for line in text.splitlines()
        if line.startswith("version")
    )


# --- lint and values schema -----------------------------------------------------------------


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_charts_are_versioned_with_the_package(chart: Path) -> None:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == _pyproject_version()
    assert meta["version"] == _pyproject_version()
    assert (chart / "values.schema.json").is_file()
    assert not (chart / "crds").exists(), "CRDs live in templates/ of faultline-crds"


@pytest.mark.parametrize("name", SETS)
def test_lint_strict(name: str) -> None:
    report = helm.lint(str(OPERATOR_CHART), _values(name), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


@pytest.mark.parametrize("values", [{}, {"keep": False, "kopfPeering": {"enabled": False}}])
def test_lint_strict_crds_chart(values: dict[str, Any]) -> None:
    report = helm.lint(str(CRDS_CHART), values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": "3"},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"watchNamespaces": ["lab", "lab"]},
        {"logFormat": "xml"},
        {"rbac": {"secretNames": "lab-ssh"}},
        {"rbac": {"secretsNames": ["typo"]}},
        {"image": {"repository": "x", "digest": "latest"}},
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
        {"securityContext": {"readOnlyRootFilesystem": "yes"}},
        {"replicas": 3},
    ],
    ids=json.dumps,
)
def test_values_schema_refuses(values: dict[str, Any]) -> None:
    with helm.Chart.load(str(OPERATOR_CHART)) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmError):
            chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_values_schema_accepts_every_set() -> None:
    with helm.Chart.load(str(OPERATOR_CHART)) as chart:
        for name in SETS:
            chart.validate_schema(_values(name))
        chart.validate_schema(yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text()))


def test_all_secrets_needs_watched_namespaces() -> None:
    with pytest.raises(helm.HelmError, match="needs watchNamespaces"):
        render(OPERATOR_CHART, {"rbac": {"allSecretsInWatchedNamespaces": True}})


# --- rendered manifests -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
def test_rendered_manifests_are_valid(name: str) -> None:
    known = custom_kinds()
    docs = render(OPERATOR_CHART, _values(name))
    assert docs
    problems = [p for doc in docs for p in validation_errors(doc, known)]
    assert problems == [], "\n".join(problems)
    for doc in docs:  # Argo CD and `kubectl apply` need explicit namespaces
        scoped = doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering")
        assert bool(doc["metadata"].get("namespace")) == scoped, doc["metadata"]


@pytest.mark.parametrize("values", [{}, {"kopfPeering": {"enabled": False}, "keep": False}])
def test_crd_chart_manifests_are_valid(values: dict[str, Any]) -> None:
    docs = render(CRDS_CHART, values)
    problems = [p for doc in docs for p in validation_errors(doc, custom_kinds())]
    assert problems == [], "\n".join(problems)
    names = {d["metadata"]["name"] for d in docs}
    peering = {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert (peering <= names) == (values == {})
    for doc in docs:
        annotations = doc["metadata"].get("annotations") or {}
        assert (annotations.get("helm.sh/resource-policy") == "keep") == values.get("keep", True)
        assert "Prune=false" in annotations["argocd.argoproj.io/sync-options"]


def test_crd_chart_serves_the_generated_crds() -> None:
    """The chart reads crds/ itself (files/faultline is a link to it), so regenerating crds/
    updates the chart; rendered, they are the models' CRDs with the chart's labels and
    annotations added."""
    files = CRDS_CHART / "files" / "faultline"
    assert files.is_symlink() and files.resolve() == (CRDS_CHART.parents[1] / "crds").resolve()
    rendered = {d["metadata"]["name"]: d for d in render(CRDS_CHART)}
    assert set(rendered) >= {c["metadata"]["name"] for c in crds.crds()}
    for crd in crds.crds():
        got = rendered[crd["metadata"]["name"]]
        assert got["spec"] == crd["spec"]  # numbers compare equal across YAML round trips
        assert crd["metadata"]["labels"].items() <= got["metadata"]["labels"].items()
        assert got["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize("name", SETS)
def test_pod_is_hardened(name: str) -> None:
    docs = render(OPERATOR_CHART, _values(name))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    ctr = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any("hostPath" in v for v in pod["volumes"])
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # /tmp is the only writable path: memory-backed (keys from Secrets never reach a disk).
    [tmp] = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]  # noqa: S108
    assert ctr["resources"]["limits"]["memory"]
    assert ctr["resources"]["requests"]["cpu"]
    # Probes hit kopf's health endpoint on the port `--liveness` serves.
    port = next(p for p in ctr["ports"] if p["name"] == "health")["containerPort"]
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in ctr["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ctr["image"].startswith("faultline:") or "@sha256:" in ctr["image"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in ctr[
        "env"
    ]


@pytest.mark.parametrize("name", SETS)
def test_args_are_faultline_run_options(name: str) -> None:
    """Every argument the chart passes is an option `faultline run` has (click parses them
    exactly as the container's entrypoint will)."""
    args = container(render(OPERATOR_CHART, _values(name)))["args"]
    ctx = run_operator.make_context("run", list(args))
    params = ctx.params
    values = _values(name)
    assert list(params["namespaces"]) == values.get("watchNamespaces", [])
    assert params["log_format"] == "json"
    metrics = values.get("metrics", {}).get("enabled", True)
    assert params["metrics"] == ("0.0.0.0:9090" if metrics else "none")
    peering = values.get("replicaCount", 1) > 1
    assert params["peering"] == (RELEASE if peering else None)
    assert params["kill_switch"] is values.get("killSwitch", False)
    # The cluster-wide kill switch lives in the operator's own namespace: the pod's.
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container(render(OPERATOR_CHART, values))["env"]


@pytest.mark.parametrize("name", SETS)
def test_peering_follows_replicas(name: str) -> None:
    values = _values(name)
    docs = render(OPERATOR_CHART, values)
    clusterwide = not values.get("watchNamespaces")
    replicas = values.get("replicaCount", 1)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    peerings = [d for d in docs if d["kind"] in PEERING.values()]
    if replicas > 1:
        assert f"--peering={RELEASE}" in container(docs)["args"]
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        expected = 1 if clusterwide else len(values["watchNamespaces"])
        assert [d["kind"] for d in peerings] == [PEERING[clusterwide]] * expected
        assert {d["metadata"]["name"] for d in peerings} == {RELEASE}
        if not clusterwide:
            assert {d["metadata"]["namespace"] for d in peerings} == set(values["watchNamespaces"])
    else:
        assert not any(a.startswith("--peering") for a in container(docs)["args"])
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert peerings == []


@pytest.mark.parametrize("name", SETS)
def test_rbac_is_least_privilege(name: str) -> None:
    values = _values(name)
    docs = render(OPERATOR_CHART, values)
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    grants = Grants.of(docs, account, NAMESPACE)
    rules = grants.cluster + [r for rs in grants.namespaced.values() for r in rs]
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        writes = {"create", "update", "delete", "deletecollection", "escalate", "bind"}
        allowed_writes = {  # resource -> the writes it may have, and why
            ("events",): {"create"},  # Events on injections
            ("faultinjections",): {"create", "delete"},  # a FaultSchedule's runs
            ("faultschedules/finalizers",): {"update"},  # blockOwnerDeletion on those runs
        }
        granted = writes & set(rule["verbs"])
        assert granted <= allowed_writes.get(tuple(rule["resources"]), set()), rule
        if "configmaps" in rule["resources"]:
            # Kill switches: kopf lists and watches; only faultline-kill-switch is read.
            assert rule["verbs"] in (["list", "watch"], ["get"]), rule
            if rule["verbs"] == ["get"]:
                assert rule["resourceNames"] == ["faultline-kill-switch"], rule
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"], "Secrets are read one by one, never listed"
            if not values.get("rbac", {}).get("allSecretsInWatchedNamespaces"):
                assert rule["resourceNames"] == values["rbac"]["secretNames"]
    secret_names = values.get("rbac", {}).get("secretNames")
    if not secret_names and not values.get("rbac", {}).get("allSecretsInWatchedNamespaces"):
        assert not any("secrets" in r["resources"] for r in rules)
    if values.get("watchNamespaces"):
        # Nothing cluster-wide but kopf's read-only observation of namespaces and CRDs.
        assert {(r["apiGroups"][0], tuple(r["resources"])) for r in grants.cluster} <= {
            ("", ("namespaces",)),
            ("apiextensions.k8s.io", ("customresourcedefinitions",)),
        }
        # ... and, in the release's namespace, reading the cluster-wide kill switch.
        assert set(grants.namespaced) == {*values["watchNamespaces"], NAMESPACE}
        if NAMESPACE not in values["watchNamespaces"]:
            assert grants.namespaced[NAMESPACE] == [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get"],
                    "resourceNames": ["faultline-kill-switch"],
                }
            ]
        assert all(set(r["verbs"]) <= {"list", "watch"} for r in grants.cluster)
    else:
        assert grants.namespaced == {}
    assert "Role" in kinds(docs) or "ClusterRole" in kinds(docs)


def test_rbac_and_service_account_can_be_turned_off() -> None:
    docs = render(OPERATOR_CHART, {"rbac": {"create": False}, "serviceAccount": {"create": False}})
    assert set(kinds(docs)) == {"Deployment", "Service"}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"


def test_metrics_service_and_service_monitor() -> None:
    docs = render(OPERATOR_CHART, _values("servicemonitor"))
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert "--metrics=0.0.0.0:9090" in container(docs)["args"]
    assert "ServiceMonitor" not in kinds(render(OPERATOR_CHART))
    bare = render(OPERATOR_CHART, _values("no-metrics-digest-kill-switch"))
    assert "Service" not in kinds(bare)
    assert container(bare)["image"] == "registry.example.com/faultline@sha256:" + "a" * 64


# --- installs into the emulated API -----------------------------------------------------------


def _installed(kube: KubeAPI, docs: list[dict[str, Any]]) -> list[str]:
    missing = []
    for doc in docs:
        meta = doc["metadata"]
        if kube.get(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace")) is None:
            missing.append(f"{doc['kind']} {meta.get('namespace', '')}/{meta['name']}")
    return missing


def test_crd_chart_installs_the_crds(kube: KubeAPI) -> None:
    names = {
        c["metadata"]["name"]
        for c in kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    }
    assert {
        "faulttargets.faultline.dev",
        "faultinjections.faultline.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    } <= names
    served = {(r.group, r.plural) for r in kube.resources()}
    assert ("faultline.dev", "faultinjections") in served
    assert ("kopf.dev", "clusterkopfpeerings") in served


@pytest.mark.parametrize("name", ["namespaced-2", "servicemonitor", "replicas-3-peering"])
def test_install_upgrade_uninstall(kube: KubeAPI, kubeconfig: Path, name: str) -> None:
    """Helm (v4 SDK) installs the chart into the emulated API: every rendered object is
    there; an upgrade to 3 replicas adds peering; uninstall removes them again."""
    values = _values(name)
    for namespace in values.get("watchNamespaces", []):
        kube.ensure_namespace(namespace)
    release = f"fl-{name}"[:53]
    with helm.Config(kubeconfig_path=str(kubeconfig), namespace=NAMESPACE) as config:
        installed = config.install(str(OPERATOR_CHART), release, values)
        assert installed["status"] == "deployed", installed
        docs = [d for d in yaml.safe_load_all(installed["manifest"]) if d]
        assert {"Deployment", "ServiceAccount", "Service"} <= set(kinds(docs))
        assert {"ClusterRole", "Role"} & set(kinds(docs))
        assert _installed(kube, docs) == []
        deployment = one(docs, "Deployment")["metadata"]
        account = one(docs, "ServiceAccount")["metadata"]["name"]
        live = kube.get("apps/v1", "Deployment", deployment["name"], NAMESPACE)
        assert live is not None
        assert live["spec"]["template"]["spec"]["serviceAccountName"] == account

        upgraded = config.upgrade(str(OPERATOR_CHART), release, {**values, "replicaCount": 3})
        assert upgraded["status"] == "deployed" and upgraded["revision"] == 2
        new_docs = [d for d in yaml.safe_load_all(upgraded["manifest"]) if d]
        assert set(kinds(new_docs)) & set(PEERING.values())
        assert _installed(kube, new_docs) == []
        live = kube.get("apps/v1", "Deployment", deployment["name"], NAMESPACE)
        assert live is not None and live["spec"]["replicas"] == 3

        # keep_history: the emulator cannot purge the release record (Helm deletes that
        # Secret with a protobuf DeleteOptions body); the release's objects go either way.
        config.uninstall(release, keep_history=True)
    every = docs + new_docs
    assert len(_installed(kube, every)) == len(every), "uninstall left objects behind"


def test_crds_are_kept_on_uninstall(tmp_path: Path) -> None:
    """helm.sh/resource-policy: keep -- uninstalling the CRD chart must not delete every
    FaultInjection (without recovery) along with the CRDs."""
    with KubeAPI() as api:
        api.ensure_namespace(NAMESPACE)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        with helm.Config(kubeconfig_path=str(kubeconfig), namespace=NAMESPACE) as config:
            config.install(str(CRDS_CHART), "faultline-crds", {})
            config.uninstall("faultline-crds", keep_history=True)
        names = {
            c["metadata"]["name"]
            for c in api.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        }
    assert {"faultinjections.faultline.dev", "faulttargets.faultline.dev"} <= names


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_packaged_chart_renders_the_same(chart: Path, tmp_path: Path) -> None:
    """`helm package` follows files/faultline (a link to crds/): the archive alone renders
    what the directory renders."""
    archive = helm.package(str(chart), destination=str(tmp_path))
    with helm.Chart.load(archive) as packaged:
        names = [t["name"] for t in packaged.templates]
        assert names and all(not n.startswith("files/") for n in names)
    with helm.Chart.load(archive) as packaged, helm.Chart.load(str(chart)) as unpacked:
        assert packaged.render({}, name=RELEASE, namespace=NAMESPACE) == unpacked.render(
            {}, name=RELEASE, namespace=NAMESPACE
        )

"""examples/argocd: the Applications point at what exists, with values the charts accept;
the health checks (Lua, as Argo CD runs them) map every phase; the ignoreDifferences
expressions remove exactly what the operator writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from delivery_support import EXAMPLES, REPO, helm, lua_interpreters, run_health

from faultline.models.resources import FINALIZER, Phase

ARGOCD = EXAMPLES / "argocd"
CM = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
HEALTH_FI = CM["data"]["resource.customizations.health.faultline.dev_FaultInjection"]
HEALTH_FT = CM["data"]["resource.customizations.health.faultline.dev_FaultTarget"]
HEALTH_FS = CM["data"]["resource.customizations.health.faultline.dev_FaultSchedule"]
APPS = {p.name: yaml.safe_load(p.read_text()) for p in sorted(ARGOCD.glob("*.yaml"))}
APPS = {k: v for k, v in APPS.items() if v["kind"] == "Application"}
ARGOCD_HEALTH = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def test_the_applications() -> None:
    assert set(APPS) == {"faultline-crds.yaml", "faultline.yaml", "chaos.yaml"}
    waves = {}
    for name, app in APPS.items():
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["metadata"]["namespace"] == "argocd"
        source = app["spec"]["source"]
        path = REPO / source["path"]
        assert path.is_dir(), f"{name}: {source['path']} does not exist"
        waves[name] = int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        if "helm" in source:
            assert (path / "Chart.yaml").is_file()
            with helm.Chart.load(str(path)) as chart:
                chart.validate_schema(source["helm"].get("valuesObject") or {})
    assert waves["faultline-crds.yaml"] < waves["faultline.yaml"] < waves["chaos.yaml"]
    crds_app = APPS["faultline-crds.yaml"]["spec"]
    assert crds_app["syncPolicy"]["automated"]["prune"] is False
    assert "ServerSideApply=true" in crds_app["syncPolicy"]["syncOptions"]


def test_the_chaos_folder_holds_only_faultline_objects() -> None:
    app = APPS["chaos.yaml"]["spec"]
    folder = REPO / app["source"]["path"]
    docs = [d for p in folder.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    assert {d["kind"] for d in docs} <= {"FaultTarget", "FaultInjection", "FaultSchedule"}
    assert {d["kind"] for d in docs} >= {"FaultTarget", "FaultInjection"}
    assert all("namespace" not in d["metadata"] for d in docs), "the Application sets it"
    operator = APPS["faultline.yaml"]["spec"]["source"]["helm"]["valuesObject"]
    assert app["destination"]["namespace"] in operator["watchNamespaces"]
    # The Secrets the folder's targets name are the ones the operator may read.
    wanted = {
        ref["name"]
        for d in docs
        if d["kind"] == "FaultTarget"
        for key, ref in d["spec"].get("ssh", {}).items()
        if key.endswith("Secret")
    }
    assert wanted <= set(operator["rbac"]["secretNames"])
    # The Application's ignoreDifferences and argocd-cm's say the same.
    for rule in app["ignoreDifferences"]:
        key = f"resource.customizations.ignoreDifferences.{rule['group']}_{rule['kind']}"
        system = yaml.safe_load(CM["data"][key])
        assert system == {k: v for k, v in rule.items() if k not in ("group", "kind")}


def _injection(status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "faultline.dev/v1alpha1",
        "kind": "FaultInjection",
        "metadata": {"name": "kill-memcached", "namespace": "chaos", "finalizers": [FINALIZER]},
        "spec": {"targetRef": {"name": "lab"}, "command": "kill memcached service on one node"},
    }
    if status is not None:
        obj["status"] = status
    return obj


#: (status, expected Argo CD health, a word the message must contain)
INJECTIONS: list[tuple[str, dict[str, Any] | None, str, str]] = [
    ("new", None, "Progressing", "Waiting"),
    ("empty status", {}, "Progressing", "Waiting"),
    (
        "Pending",
        {"phase": "Pending", "reason": "WaitingForNode", "message": "node1 is held by x"},
        "Progressing",
        "WaitingForNode",
    ),
    ("Injecting", {"phase": "Injecting"}, "Progressing", "Injecting"),
    (
        "Active",
        {"phase": "Active", "expiresAt": "2026-01-01T00:00:10Z", "conditions": []},
        "Progressing",
        "2026-01-01T00:00:10Z",
    ),
    (
        "Active, paused",
        {
            "phase": "Active",
            "conditions": [
                {"type": "Selected", "status": "True"},
                {"type": "Paused", "status": "True", "reason": "Paused"},
            ],
        },
        "Suspended",
        "Paused",
    ),
    (
        "Active, resumed",
        {"phase": "Active", "conditions": [{"type": "Paused", "status": "False"}]},
        "Progressing",
        "Active",
    ),
    ("Recovering", {"phase": "Recovering", "reason": "Expired"}, "Progressing", "Expired"),
    ("Completed", {"phase": "Completed", "completedAt": "x"}, "Healthy", "Completed"),
    ("Completed dry run", {"phase": "Completed", "reason": "DryRun"}, "Healthy", "DryRun"),
    (
        "Failed",
        {"phase": "Failed", "reason": "SelectionFailed", "message": "no node matches"},
        "Degraded",
        "no node matches",
    ),
    ("Aborted", {"phase": "Aborted", "reason": "Deleted"}, "Degraded", "Aborted"),
    ("leaked", {"phase": "Active", "leaked": True}, "Degraded", "leaked"),
    ("leaked after completion", {"phase": "Completed", "leaked": True}, "Degraded", "leaked"),
    ("unknown phase", {"phase": "Sideways"}, "Unknown", "Sideways"),
    ("quotes in a message", {"phase": "Failed", "message": 'say "hi"\n'}, "Degraded", '"hi"'),
]


@pytest.fixture(params=lua_interpreters() or [None])
def lua(request: pytest.FixtureRequest) -> str:
    if request.param is None:
        pytest.skip("no Lua interpreter: apt-get install lua5.4 (and lua5.1, Argo CD's dialect)")
    return str(request.param)


def test_every_phase_has_a_case() -> None:
    covered = {status.get("phase") for _, status, _, _ in INJECTIONS if status}
    assert {p.value for p in Phase} <= covered


@pytest.mark.parametrize(
    ("case", "status", "health", "word"), INJECTIONS, ids=[c[0] for c in INJECTIONS]
)
def test_injection_health(
    lua: str, tmp_path: Path, case: str, status: dict[str, Any] | None, health: str, word: str
) -> None:
    got = run_health(lua, HEALTH_FI, _injection(status), tmp_path)
    assert got["status"] == health, (case, got)
    assert got["status"] in ARGOCD_HEALTH
    assert word in got["message"], (case, got)


TARGETS = [
    ("new", None, "Progressing"),
    (
        "ready",
        {
            "conditions": [
                {"type": "Discovered", "status": "True"},
                {"type": "Ready", "status": "True", "reason": "Ready"},
            ]
        },
        "Healthy",
    ),
    (
        "unreachable",
        {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "NotReady", "message": "node2"}
            ]
        },
        "Degraded",
    ),
    (
        "invalid",
        {"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidTarget"}]},
        "Degraded",
    ),
]


@pytest.mark.parametrize(("case", "status", "health"), TARGETS, ids=[c[0] for c in TARGETS])
def test_target_health(
    lua: str, tmp_path: Path, case: str, status: dict[str, Any] | None, health: str
) -> None:
    obj: dict[str, Any] = {"kind": "FaultTarget", "metadata": {"name": "lab"}, "spec": {}}
    if status is not None:
        obj["status"] = status
    assert run_health(lua, HEALTH_FT, obj, tmp_path)["status"] == health


def test_ignore_differences_remove_only_what_the_operator_writes() -> None:
    """The jq path expressions (Argo CD evaluates them inside `del(...)`) with jq."""
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq not installed (apt-get install jq)")
    rules = yaml.safe_load(
        CM["data"]["resource.customizations.ignoreDifferences.faultline.dev_FaultInjection"]
    )
    live = _injection({"phase": "Active"})
    live["metadata"]["annotations"] = {
        "kopf.zalando.org/last-handled-configuration": "{}",
        "kopf.zalando.org/drive_injection": "{}",
        "team": "sre",
    }
    for expression in rules["jqPathExpressions"]:
        for obj, kept in ((live, {"team": "sre"}), (_injection(None), None)):
            done = subprocess.run(
                [jq, "-c", f"del({expression})"],
                input=json.dumps(obj),
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["metadata"].get("annotations") == kept
    assert set(rules["jsonPointers"]) == {"/status", "/metadata/finalizers"}


SCHEDULES = [
    ("new", None, "Progressing"),
    (
        "scheduling",
        {"conditions": [{"type": "Ready", "status": "True", "reason": "Scheduling"}]},
        "Healthy",
    ),
    (
        "suspended",
        {"conditions": [{"type": "Ready", "status": "True", "reason": "Suspended"}]},
        "Suspended",
    ),
    (
        "too late",
        {"conditions": [{"type": "Ready", "status": "False", "reason": "MissedStart"}]},
        "Degraded",
    ),
]


@pytest.mark.parametrize(("case", "status", "health"), SCHEDULES, ids=[c[0] for c in SCHEDULES])
def test_schedule_health(
    lua: str, tmp_path: Path, case: str, status: dict[str, Any] | None, health: str
) -> None:
    obj: dict[str, Any] = {"kind": "FaultSchedule", "metadata": {"name": "nightly"}, "spec": {}}
    if status is not None:
        obj["status"] = status
    assert run_health(lua, HEALTH_FS, obj, tmp_path)["status"] == health


def test_every_faultline_kind_has_a_health_check_and_ignore_rule() -> None:
    from faultline.models.crds import KINDS

    for kind in KINDS:
        assert f"resource.customizations.health.faultline.dev_{kind.kind}" in CM["data"]
        assert f"resource.customizations.ignoreDifferences.faultline.dev_{kind.kind}" in CM["data"]

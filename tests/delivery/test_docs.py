"""The user docs: `mkdocs build --strict` (broken links, missing anchors, pages left out of
the nav all fail it), and the pages keep up with the code they describe."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from delivery_support import OPERATOR_CHART, REPO

from faultline.cli import main as cli_main
from faultline.cli import run_operator
from faultline.models.config import (
    ContainerConfig,
    PowerDriverName,
    SafetyConfig,
    ServiceDriverName,
    SshConfig,
)
from faultline.models.faults import ACTIONS, FaultKind
from faultline.models.records import RecordPhase
from faultline.models.resources import (
    FINALIZER,
    FORCE_RELEASE_ANNOTATION,
    PAUSED_ANNOTATION,
    FaultInjectionSpec,
    Phase,
    Selector,
    SelectorMode,
)
from faultline.models.schedule import FaultScheduleSpec
from faultline.reconcile import metrics

pytest.importorskip("mkdocs", reason="the docs need the extra: pip install -e '.[docs]'")

DOCS = REPO / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text()


def _aliases(model: type[typing.Any]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    # Not from the repository root: its `operator/` folder would shadow the stdlib module.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "performance" / "index.html").is_file()


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = {next(iter(item.values())) for item in config["nav"]}
    assert in_nav == {p.name for p in DOCS.glob("*.md")}


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {heading!r}"
    return match.group(1)


@pytest.mark.parametrize("kind", list(FaultKind))
def test_every_action_and_its_rollback(kind: FaultKind) -> None:
    section = _section(page("actions.md"), f"{kind.value.title()} actions")
    for action in ACTIONS[kind]:
        row = re.search(rf"^\| `{action}` \|([^\n]*)$", section, re.M)
        assert row, f"docs/actions.md: {kind}.{action} has no row"
        cells = [c.strip() for c in row.group(1).split("|") if c.strip()]
        assert len(cells) == 2, f"{kind}.{action}: what it does, and its rollback"


def test_sentences_list_every_verb() -> None:
    from faultline.human import ACTIONS as VERBS

    text = page("sentences.md")
    for verb in VERBS:
        assert f"`{verb}`" in text, verb


def test_sentence_examples_parse() -> None:
    from faultline.human import parse

    text = page("sentences.md")
    block = text.split("## Examples", 1)[1].split("```", 2)[1]
    examples = [line for line in block.splitlines() if line.strip()]
    assert len(examples) > 10
    for example in examples:
        assert parse(example).canonical(), example


def test_drivers_are_documented_and_planned_ones_say_so() -> None:
    from faultline.drivers.power import build_backend
    from faultline.models.config import PowerConfig
    from faultline.models.errors import ConfigError

    text = page("drivers.md")
    for name in typing.get_args(ServiceDriverName):
        assert f"`{name}`" in text, name
    for name in typing.get_args(ContainerConfig.model_fields["driver"].annotation):
        assert f"`{name}`" in text, name
    for name in typing.get_args(PowerDriverName):
        [row] = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        try:
            build_backend(
                PowerConfig(
                    driver=name,
                    args={"uri": "test:///default"}
                    if name == "libvirt"
                    else {"url": "https://bmc"}
                    if name == "redfish"
                    else {},
                )
            )
            available = True
        except ConfigError as exc:
            available = "not available" not in exc.message
        assert ("**planned**" in row) != available, row
    for field in _aliases(SshConfig):
        assert f"`{field}`" in text or f"`{field}`," in text, f"ssh.{field}"


def test_safety_fields() -> None:
    text = page("safety.md")
    for field in _aliases(SafetyConfig):
        assert f"`{field}`" in text, f"safety.{field}"


def test_resource_fields_phases_and_records() -> None:
    text = page("concepts.md")
    for field in _aliases(FaultInjectionSpec) + _aliases(Selector) + _aliases(FaultScheduleSpec):
        assert re.search(rf"\b{field}\b", text), field
    for value in [p.value for p in Phase] + [r.value for r in RecordPhase]:
        assert f"`{value}`" in text, value
    for mode in SelectorMode:
        assert mode.value in text
    assert FINALIZER in text


def test_operations_cover_the_operator() -> None:
    text = page("operations.md")
    for option in run_operator.params:
        for flag in option.opts:
            if flag.startswith("--"):
                assert f"`{flag}`" in text, flag
    assert f"{FORCE_RELEASE_ANNOTATION}=true" in text
    assert f"{PAUSED_ANNOTATION}=true" in text
    names = [metrics.ACTIONS._name + "_total", metrics.RECOVERIES._name + "_total"]
    names += [metrics.DURATION._name]
    names += [family.name for family in metrics.PHASES.collect()]
    for name in names:
        assert f"`{name}`" in text, name


def test_cli_commands() -> None:
    text = page("cli.md")
    for command in cli_main.commands:
        assert f"`faultline {command}" in text, command


def test_install_covers_every_chart_value() -> None:
    text = page("install.md")
    values = yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())
    for key in values:
        assert f"`{key}" in text, f"charts/faultline value {key} is not in docs/install.md"


def test_no_links_out_of_the_docs() -> None:
    """mkdocs cannot check links to repository files; refer to them as code instead."""
    for path in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)", path.read_text()):
            assert target.startswith("https://") or (DOCS / target).is_file(), (path, target)

"""Shared fixtures: one real lab per test session (needs root; builds network namespaces)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from faultline.lab import Lab, cleanup_leftovers
from lab_support import addon_lab, recovering_cloud


@pytest.fixture(scope="session")
def lab_root() -> Iterator[Path]:
    """A world-traversable scratch dir (lab daemons of other users look inside)."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network namespaces, cgroups, mounts): run as root")
    # Labs of earlier runs that crashed before tearing down; live labs are left alone.
    cleanup_leftovers()
    root = Path(tempfile.mkdtemp(prefix="faultline-lab-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(lab_root: Path) -> Iterator[Lab]:
    with addon_lab(lab_root, "lab", ("ipmi",), container_tools=("podman", "docker")) as the_lab:
        yield the_lab


@pytest.fixture
def healthy_lab(lab: Lab) -> Lab:
    """The session lab, with every node powered on and healthy again."""
    lab.reset_state()
    return lab


@pytest.fixture
def cloud(healthy_lab: Lab, tmp_path: Path) -> Iterator[Any]:
    """The engine's os-faults compatible API, connected to the healthy lab.

    Whatever a test leaves applied is recovered afterwards through the engine itself, so a
    failing test cannot leak its fault into the next one (reset_state would heal it too).
    """
    with recovering_cloud(healthy_lab.config_path, tmp_path) as the_cloud:
        yield the_cloud


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI every test runs: a skip there would hide a missing install step."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        print(f"\nCI: {len(skipped)} test(s) skipped; in CI every test must run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- the OpenStack lab (tests/openstack and tests/e2e) -------------------------------------
# 3 lab nodes with the `ipmi` and `openstack` add-ons (Keystone, Nova with one fake-driver
# nova-compute per node, Placement, Glance, Neutron, RabbitMQ, MariaDB, all on 127.0.0.1);
# `os_conn` is an openstacksdk connection of the test's own, built from the lab's clouds.yaml.


@pytest.fixture(scope="session")
def os_lab(lab_root: Path) -> Iterator[Lab]:
    with addon_lab(lab_root, "openstack-lab", ("ipmi", "openstack")) as the_lab:
        yield the_lab


@pytest.fixture(scope="session")
def os_cloud(os_lab: Lab) -> dict[str, str]:
    """The target's `openstack:` block, as the add-on wrote it."""
    section: dict[str, str] = yaml.safe_load(os_lab.config_path.read_text())["openstack"]
    return section


@pytest.fixture(scope="session")
def os_conn(os_cloud: dict[str, str]) -> Iterator[Any]:
    import openstack.config

    config = openstack.config.OpenStackConfig(config_files=[os_cloud["cloudsFile"]])
    region = config.get_one(cloud=os_cloud["cloud"])
    conn = openstack.connection.Connection(config=region)
    try:
        yield conn
    finally:
        conn.close()

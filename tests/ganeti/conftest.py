"""A lab of its own with the `ganeti` add-on: a real two-node Ganeti 3.0 cluster.

Assertions read the cluster through RAPI with a client of the test's own and through
Ganeti's command line tools inside the cluster's namespace (`gnt-instance list`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ganeti_helpers import NODE2, cloud_config, run

from faultline.drivers.ganeti import RapiClient
from faultline.lab import Lab
from faultline.models.ganeti import GanetiConnection
from lab_support import addon_lab, recovering_cloud


@pytest.fixture(scope="session")
def glab(lab_root: Path) -> Iterator[Lab]:
    with addon_lab(lab_root, "ganeti-lab", ("ganeti",)) as the_lab:
        yield the_lab


@pytest.fixture(scope="session")
def ganeti_section(glab: Lab) -> dict[str, Any]:
    """The `ganeti` section the add-on wrote into the lab's target.yaml."""
    data = yaml.safe_load(glab.config_path.read_text())
    section: dict[str, Any] = data["ganeti"]
    return section


@pytest.fixture(scope="session")
def conn(ganeti_section: dict[str, Any]) -> GanetiConnection:
    return GanetiConnection.model_validate(ganeti_section)


@pytest.fixture(scope="session")
def rapi(conn: GanetiConnection) -> RapiClient:
    return RapiClient(conn)


async def _heal(rapi: RapiClient) -> None:
    """Every instance running, gnt2 a master candidate again (whatever a test left)."""
    for inst in await rapi.instances():
        if inst["admin_state"] != "up" or inst.get("oper_state") is not True:
            await rapi.instance_startup(inst["name"])
    if await rapi.node_role(NODE2) != "master-candidate":
        await rapi.set_node_role(NODE2, "master-candidate")


@pytest.fixture
def healthy(glab: Lab, rapi: RapiClient) -> Iterator[Lab]:
    run(_heal(rapi))
    yield glab
    run(_heal(rapi))


@pytest.fixture
def cloud(healthy: Lab, tmp_path: Path) -> Iterator[Any]:
    with recovering_cloud(cloud_config(healthy), tmp_path) as the_cloud:
        yield the_cloud

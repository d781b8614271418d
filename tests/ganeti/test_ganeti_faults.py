"""Ganeti faults through the engine (os-faults compatible API): apply, observe, recover.

The state is read back through RAPI (a client of the test's own) and `gnt-*` inside the
cluster, never from what Faultline reports about itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from ganeti_helpers import (
    INST1,
    INST2,
    INST3,
    MASTER,
    NODE2,
    cloud_config,
    gnt,
    instance_status,
    node_role_cli,
    run,
)

import faultline
from faultline.drivers.ganeti import RapiClient
from faultline.lab import Lab
from faultline.models.errors import ActionError, ConfigError
from faultline.models.faults import FaultKind, FaultSpec
from faultline.models.records import RecordPhase

pytestmark = pytest.mark.lab


def ganeti(action: str, **params: Any) -> FaultSpec:
    return FaultSpec(kind=FaultKind.GANETI, action=action, params=params)


def job_ops(glab: Lab, what: str) -> int:
    """How many jobs with this opcode summary (e.g. INSTANCE_REBOOT(inst1...)) succeeded."""
    rows = gnt(glab, "gnt-job", "list", "--no-headers", "-o", "status,summary")
    return sum(1 for row in rows.splitlines() if row.split()[:1] == ["success"] and what in row)


# -- instances ---------------------------------------------------------------------------------


def test_instance_shutdown_is_real_and_recovered(cloud: Any, glab: Lab, rapi: RapiClient) -> None:
    result = cloud.act(ganeti("shutdown"), cloud.get_nodes([INST1]))
    (record,) = result.records
    assert record.identity == {"cluster": rapi.url, "object": "instance", "name": INST1}
    assert record.previous["adminState"] == "up"
    inst = run(rapi.instance(INST1))
    assert (inst["admin_state"], inst["oper_state"], inst["status"]) == (
        "down",
        False,
        "ADMIN_down",
    )
    assert instance_status(glab, INST1) == "ADMIN_down"
    assert instance_status(glab, INST2) == "running"  # only the selected one
    recovered = cloud.recover(result)
    assert recovered.records[0].phase == RecordPhase.RECOVERED
    assert instance_status(glab, INST1) == "running"
    assert run(rapi.instance(INST1))["oper_state"] is True


def test_shutdown_of_a_stopped_instance_leaves_it_stopped(
    cloud: Any, glab: Lab, rapi: RapiClient
) -> None:
    run(rapi.instance_shutdown(INST3))
    result = cloud.act(ganeti("shutdown"), cloud.get_nodes([INST3]))
    assert "already down" in (result.records[0].output or "")
    cloud.recover(result)
    assert instance_status(glab, INST3) == "ADMIN_down"


@pytest.mark.parametrize("kind", ["hard", "soft", "full"])
def test_instance_reboot(cloud: Any, glab: Lab, rapi: RapiClient, kind: str) -> None:
    before = job_ops(glab, f"INSTANCE_REBOOT({INST2})")
    result = cloud.act(ganeti("reboot", type=kind), cloud.get_nodes([INST2]))
    (record,) = result.records
    assert record.identity["rebootType"] == kind
    assert job_ops(glab, f"INSTANCE_REBOOT({INST2})") == before + 1
    assert f"{kind} reboot" in (record.output or "")
    assert instance_status(glab, INST2) == "running"
    cloud.recover(result)
    assert instance_status(glab, INST2) == "running"


def test_reboot_of_a_stopped_instance_is_undone_by_stopping_it(
    cloud: Any, glab: Lab, rapi: RapiClient
) -> None:
    run(rapi.instance_shutdown(INST1))
    result = cloud.act(ganeti("reboot"), cloud.get_nodes([INST1]))
    assert instance_status(glab, INST1) == "running"  # Ganeti starts it
    cloud.recover(result)
    assert instance_status(glab, INST1) == "ADMIN_down"  # exactly as before


def test_startup_and_its_rollback(cloud: Any, glab: Lab, rapi: RapiClient) -> None:
    run(rapi.instance_shutdown(INST2))
    result = cloud.act(ganeti("startup"), cloud.get_nodes([INST2]))
    assert instance_status(glab, INST2) == "running"
    cloud.recover(result)
    assert instance_status(glab, INST2) == "ADMIN_down"


def test_instance_recovery_after_someone_else_started_it_is_idempotent(
    cloud: Any, glab: Lab, rapi: RapiClient
) -> None:
    result = cloud.act(ganeti("shutdown"), cloud.get_nodes([INST1]))
    run(rapi.instance_startup(INST1))
    first = cloud.recover(result)
    assert "as before" in (first.records[0].output or "")
    assert instance_status(glab, INST1) == "running"


def test_reboot_type_is_checked_before_anything_is_touched(cloud: Any) -> None:
    with pytest.raises(ConfigError, match=r"params\.type"):
        cloud.act(ganeti("reboot", type="gentle"), cloud.get_nodes([INST1]))


def test_a_node_action_on_an_instance_is_refused(cloud: Any, glab: Lab) -> None:
    with pytest.raises(ActionError, match="drain acts on Ganeti nodes"):
        cloud.act(ganeti("drain"), cloud.get_nodes([INST1]))
    assert instance_status(glab, INST1) == "running"


# -- node roles --------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "role", "letter"), [("drain", "drained", "D"),
                                                        ("offline", "offline", "O"),
                                                        ("regular", "regular", "R")])  # fmt: skip
def test_node_role_and_back(
    cloud: Any, glab: Lab, rapi: RapiClient, action: str, role: str, letter: str
) -> None:
    assert node_role_cli(glab, NODE2) == "C"
    result = cloud.act(ganeti(action), cloud.get_nodes([NODE2]))
    (record,) = result.records
    assert record.identity == {"cluster": rapi.url, "object": "node", "name": NODE2}
    assert record.previous == {"role": "master-candidate"}
    assert run(rapi.node_role(NODE2)) == role
    assert node_role_cli(glab, NODE2) == letter
    cloud.recover(result)
    assert run(rapi.node_role(NODE2)) == "master-candidate"
    assert node_role_cli(glab, NODE2) == "C"


def test_a_node_drained_before_stays_drained(cloud: Any, glab: Lab, rapi: RapiClient) -> None:
    run(rapi.set_node_role(NODE2, "drained"))
    drained = cloud.act(ganeti("drain"), cloud.get_nodes([NODE2]))
    assert "already drained" in (drained.records[0].output or "")
    cloud.recover(drained)
    assert node_role_cli(glab, NODE2) == "D"
    offline = cloud.act(ganeti("offline"), cloud.get_nodes([NODE2]))
    assert node_role_cli(glab, NODE2) == "O"
    cloud.recover(offline)
    assert node_role_cli(glab, NODE2) == "D"  # back to drained, not to a candidate


def test_the_master_is_refused_and_left_alone(cloud: Any, glab: Lab) -> None:
    with pytest.raises(ActionError, match="is the master"):
        cloud.act(ganeti("drain"), cloud.get_nodes([MASTER]))
    assert node_role_cli(glab, MASTER) == "M"


def test_ganeti_faults_need_the_ganeti_section(glab: Lab) -> None:
    data = cloud_config(glab)
    del data["ganeti"], data["discovery"]["ganeti"]
    with faultline.connect(data) as plain, pytest.raises(ConfigError, match="ganeti"):
        plain.act(ganeti("shutdown"), plain.get_nodes(["node1"]))


@pytest.mark.parametrize("action", ["drain", "offline"])
def test_a_regular_node_comes_back_regular(
    cloud: Any, glab: Lab, rapi: RapiClient, action: str
) -> None:
    """Ganeti promotes a node leaving drained/offline to candidate by itself; recovery
    puts it back to exactly the role it had."""
    run(rapi.set_node_role(NODE2, "regular"))
    assert node_role_cli(glab, NODE2) == "R"
    result = cloud.act(ganeti(action), cloud.get_nodes([NODE2]))
    assert result.records[0].previous == {"role": "regular"}
    cloud.recover(result)
    assert node_role_cli(glab, NODE2) == "R"

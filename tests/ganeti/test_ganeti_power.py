"""The `ganeti` power backend: instances powered through RAPI, on the lab's real cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ganeti_helpers import INST1, INST3, cloud_config, instance_status, run

from faultline.drivers.power import PowerError, PowerState, PowerTarget, build_backend
from faultline.lab import Lab
from faultline.models.config import PowerConfig
from faultline.models.errors import ConfigError
from faultline.models.records import RecordPhase
from lab_support import recovering_cloud

pytestmark = pytest.mark.lab


def backend(ganeti_section: dict[str, Any], **extra: Any) -> Any:
    return build_backend(PowerConfig(driver="ganeti", args={**ganeti_section, **extra}))


def test_power_off_and_on(ganeti_section: dict[str, Any], healthy: Lab) -> None:
    power = backend(ganeti_section)
    node = PowerTarget(INST1, "10.252.0.1")

    async def scenario() -> list[Any]:
        said = [await power.state(node), await power.power_off(node), await power.state(node)]
        said.append(instance_status(healthy, INST1))
        said += [await power.power_off(node), await power.power_on(node), await power.state(node)]
        said += [instance_status(healthy, INST1), await power.power_on(node)]
        await power.close()
        return said

    said = run(scenario())
    assert said[0] == PowerState.ON
    assert said[2] == PowerState.OFF and said[3] == "ADMIN_down"
    assert "already off" in said[4]
    assert said[6] == PowerState.ON and said[7] == "running"
    assert "already on" in said[8]


def test_reset_and_graceful_shutdown(ganeti_section: dict[str, Any], healthy: Lab) -> None:
    # The lab node's fqdn differs from the instance's name: args.instances maps it.
    power = backend(ganeti_section, instances={"web1": INST3})
    node = PowerTarget("web1", "10.252.0.2")

    async def scenario() -> list[Any]:
        said = [await power.reset(node), await power.state(node)]
        said += [await power.shutdown(node), instance_status(healthy, INST3)]
        said += [await power.reset(node), instance_status(healthy, INST3)]  # off: started
        await power.close()
        return said

    said = run(scenario())
    assert "hard reboot" in said[0] and said[1] == PowerState.ON
    assert said[3] == "ADMIN_down"
    assert "was off" in said[4] and said[5] == "running"


def test_unknown_instance_and_bad_args(ganeti_section: dict[str, Any]) -> None:
    power = backend(ganeti_section)
    with pytest.raises(PowerError, match=r"no instance 'nothere'.*args\.instances"):
        run(power.state(PowerTarget("nothere", "10.252.0.9")))
    with pytest.raises(ConfigError) as err:
        build_backend(PowerConfig(driver="ganeti", args={"username": "x"}), 2)
    assert err.value.field.startswith("power[2].args")


def test_power_fault_on_an_instance_without_ssh(
    healthy: Lab, ganeti_section: dict[str, Any], tmp_path: Path
) -> None:
    """The lab's instances answer no SSH (their addresses are blackholed on the host), so
    the power fault verifies recovery through the backend and says so."""
    config = cloud_config(healthy)
    config["power"] = [{"driver": "ganeti", "nodes": [INST1], "args": dict(ganeti_section)}]
    with recovering_cloud(config, tmp_path) as cloud:
        result = cloud.get_nodes([INST1]).poweroff()
        (record,) = result.records
        assert record.previous == {"power": "on", "bootId": None}
        assert instance_status(healthy, INST1) == "ADMIN_down"
        recovered = cloud.recover(result)
        (back,) = recovered.records
        assert back.phase == RecordPhase.RECOVERED
        assert "ganeti reports it on" in (back.output or "")
        assert instance_status(healthy, INST1) == "running"
        reset = cloud.get_nodes([INST1]).reset()
        assert "ganeti reports it on" in (reset.records[0].output or "")
        assert instance_status(healthy, INST1) == "running"

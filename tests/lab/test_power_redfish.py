"""Power faults through the Redfish backend against sushy-tools' emulator over real TLS.

The `redfish` add-on runs the emulator (HTTPS with a CA of its own, basic auth) with its
libvirt driver on the lab's libvirtd, whose listener mirrors the domains onto the lab nodes:
a Redfish ForceOff really cuts the node. The tests use a target whose only power backend is
Redfish (the lab's target lists libvirt first, which would win).
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import faultline
from faultline.drivers.power import build_backend
from faultline.lab import Lab
from faultline.models.config import PowerConfig
from faultline.models.errors import ActionError, ConfigError
from faultline.models.faults import FaultKind, FaultSpec
from lab_observe import eventually, out, ssh_boot_id, sshd_answers
from lab_support import addon_lab, recovering_cloud

pytestmark = pytest.mark.lab

NODES = ("node1", "node2", "node3")


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rlab(lab_root: Path) -> Iterator[Lab]:
    with addon_lab(lab_root, "redfish-lab", ("libvirt", "redfish")) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def redfish_args(rlab: Lab) -> dict[str, Any]:
    data = yaml.safe_load(rlab.config_path.read_text())
    assert [p["driver"] for p in data["power"]] == ["libvirt", "redfish"]
    args: dict[str, Any] = data["power"][1]["args"]
    return args


class Bmc:
    """A Redfish client of the test's own (plain HTTPS, the add-on's CA) to look at systems."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.url = args["url"]
        self.context = ssl.create_default_context(cafile=args["caFile"])
        user = Path(args["usernameFile"]).read_text()
        password = Path(args["passwordFile"]).read_text()
        self.auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.ids: dict[str, str] = {}
        for member in self.get("/redfish/v1/Systems")["Members"]:
            system = self.get(member["@odata.id"])
            self.ids[system["Name"]] = member["@odata.id"]

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path)  # noqa: S310 - https, ours
        request.add_header("Authorization", f"Basic {self.auth}")
        with urllib.request.urlopen(request, context=self.context, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    def power(self, node: str) -> str:
        return str(self.get(self.ids[node])["PowerState"])


@pytest.fixture(scope="module")
def bmc(redfish_args: dict[str, Any]) -> Bmc:
    return Bmc(redfish_args)


def write_target(lab: Lab, path: Path, **args: Any) -> Path:
    """The lab's target with Redfish as its only power backend, args changed as given."""
    data = yaml.safe_load(lab.config_path.read_text())
    redfish = next(p for p in data["power"] if p["driver"] == "redfish")
    redfish["args"].update(args)
    for key in [k for k, v in args.items() if v is None]:
        del redfish["args"][key]
    data["power"] = [redfish]
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def healthy(rlab: Lab, bmc: Bmc) -> Lab:
    rlab.reset_state()
    eventually(lambda: all(bmc.power(n) == "On" for n in NODES), 10, "systems follow the lab")
    return rlab


@pytest.fixture
def cloud(healthy: Lab, tmp_path: Path) -> Iterator[Any]:
    path = write_target(healthy, tmp_path / "target.yaml")
    with recovering_cloud(path, tmp_path) as c:
        yield c


# -- observing -------------------------------------------------------------------------------------


def boot_id(lab: Lab, node: str) -> str:
    return out(lab, node, "cat /proc/sys/kernel/random/boot_id")


def assert_off(lab: Lab, bmc: Bmc, node: str) -> None:
    assert bmc.power(node) == "Off"
    eventually(lambda: lab.power(node, "status") == "off", 20, f"{node} powered off")
    assert not sshd_answers(lab, node)


def assert_back(lab: Lab, bmc: Bmc, node: str, old_boot: str) -> None:
    assert bmc.power(node) == "On"
    eventually(lambda: lab.power(node, "status") == "on", 10, f"{node} on in the lab")
    new = ssh_boot_id(lab, node)
    assert new is not None and new != old_boot


# -- the PowerFault through Redfish ----------------------------------------------------------------


def test_poweroff_cuts_the_node_and_recover_boots_it(healthy: Lab, bmc: Bmc, cloud: Any) -> None:
    before = {n: boot_id(healthy, n) for n in NODES}
    result = cloud.get_nodes(["node2"]).poweroff()
    assert result.ok
    record = result.records[0]
    assert "ForceOff; PowerState Off" in record.output
    assert record.identity["backend"] == "redfish"
    assert_off(healthy, bmc, "node2")
    for other in ("node1", "node3"):
        assert bmc.power(other) == "On"
        assert boot_id(healthy, other) == before[other]
    assert cloud.recover(result).ok
    assert_back(healthy, bmc, "node2", before["node2"])


def test_reset_reboots_with_a_new_boot_id(healthy: Lab, bmc: Bmc, cloud: Any) -> None:
    old = boot_id(healthy, "node3")
    result = cloud.get_nodes(["node3"]).reset()
    assert "ForceRestart" in result.records[0].output
    assert_back(healthy, bmc, "node3", old)
    assert cloud.recover(result).ok


def test_graceful_shutdown_then_recover(healthy: Lab, bmc: Bmc, cloud: Any) -> None:
    old = boot_id(healthy, "node1")
    result = cloud.act(
        FaultSpec(kind=FaultKind.POWER, action="shutdown"), cloud.get_nodes(["node1"])
    )
    assert "GracefulShutdown; PowerState Off" in result.records[0].output
    assert_off(healthy, bmc, "node1")
    assert cloud.recover(result).ok
    assert_back(healthy, bmc, "node1", old)


def test_poweron_of_an_off_node(healthy: Lab, bmc: Bmc, cloud: Any) -> None:
    healthy.power("node2", "off")
    eventually(lambda: bmc.power("node2") == "Off", 10, "Redfish follows the lab")
    result = cloud.get_nodes(["node2"]).poweron()
    assert "On; PowerState On" in result.records[0].output
    assert ssh_boot_id(healthy, "node2") is not None
    assert "ForceOff" in cloud.recover(result).records[0].output  # it was off before
    assert_off(healthy, bmc, "node2")


def test_poweroff_of_an_off_node_says_so(healthy: Lab, bmc: Bmc, cloud: Any) -> None:
    healthy.power("node3", "off")
    eventually(lambda: bmc.power("node3") == "Off", 10, "Redfish follows the lab")
    result = cloud.get_nodes(["node3"]).poweroff()
    assert "already off" in result.records[0].output
    assert "left off" in cloud.recover(result).records[0].output
    assert_off(healthy, bmc, "node3")


def test_system_found_by_map_when_its_name_is_not_the_fqdn(
    healthy: Lab, bmc: Bmc, tmp_path: Path
) -> None:
    fqdn = "bm-two.example.test"
    system_id = bmc.ids["node2"].rsplit("/", 1)[-1]
    path = write_target(healthy, tmp_path / "t.yaml", systems={fqdn: system_id})
    data = yaml.safe_load(path.read_text())
    for spec in data["discovery"]["static"]["nodes"]:
        if spec["fqdn"] == "node2":
            spec["fqdn"] = fqdn
    path.write_text(yaml.safe_dump(data))
    old = boot_id(healthy, "node2")
    with faultline.connect(config_filename=path) as cloud:
        result = cloud.get_nodes([fqdn]).reset()
        assert "system node2: ForceRestart" in result.records[0].output
    assert_back(healthy, bmc, "node2", old)


def test_human_api_through_redfish(healthy: Lab, bmc: Bmc, cloud: Any) -> None:
    old = boot_id(healthy, "node1")
    faultline.human_api(cloud, "reset node1 node")
    assert_back(healthy, bmc, "node1", old)


# -- TLS and credentials ---------------------------------------------------------------------------


def test_tls_is_verified_by_default(healthy: Lab, bmc: Bmc, tmp_path: Path) -> None:
    path = write_target(healthy, tmp_path / "no-ca.yaml", caFile=None)
    with faultline.connect(config_filename=path) as cloud, pytest.raises(ActionError) as failed:
        cloud.get_nodes(["node2"]).poweroff()
    message = str(failed.value)
    assert "TLS certificate verification failed" in message
    assert "caFile" in message
    assert bmc.power("node2") == "On"  # nothing was done


def test_verify_false_must_be_written_out_and_works(
    healthy: Lab, bmc: Bmc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_target(healthy, tmp_path / "insecure.yaml", caFile=None, verify=False)
    with caplog.at_level(logging.WARNING), faultline.connect(config_filename=path) as cloud:
        old = boot_id(healthy, "node3")
        cloud.get_nodes(["node3"]).reset()
    assert "verification is off" in caplog.text
    assert_back(healthy, bmc, "node3", old)


def test_wrong_password_is_refused_without_leaking_it(
    healthy: Lab,
    bmc: Bmc,
    redfish_args: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng-" + Path(redfish_args["passwordFile"]).read_text()[::-1]
    password_file = tmp_path / "password"
    password_file.write_text(wrong)
    password_file.chmod(0o600)
    path = write_target(healthy, tmp_path / "wrong.yaml", passwordFile=str(password_file))
    with (
        caplog.at_level(logging.DEBUG),
        faultline.connect(config_filename=path) as cloud,
        pytest.raises(ActionError) as failed,
    ):
        cloud.get_nodes(["node1"]).poweroff()
    message = str(failed.value)
    assert "refused the credentials" in message
    assert wrong not in message
    assert wrong not in caplog.text
    assert Path(redfish_args["passwordFile"]).read_text() not in caplog.text
    assert bmc.power("node1") == "On"


def test_bad_args_name_the_field(redfish_args: dict[str, Any]) -> None:
    def build(**args: Any) -> Any:
        return build_backend(PowerConfig(driver="redfish", args={**redfish_args, **args}))

    with pytest.raises(ConfigError, match=r"args\.url"):
        build(url="ftp://127.0.0.1")
    with pytest.raises(ConfigError, match="no credentials in the URL"):
        build(url="https://admin:hunter2@127.0.0.1")
    with pytest.raises(ConfigError, match="contradict"):
        build(verify=False)  # with caFile
    with pytest.raises(ConfigError, match="both usernameFile and passwordFile"):
        build(passwordFile=None)
    with pytest.raises(ConfigError, match=r"args\.verify"):
        build(verify="maybe")

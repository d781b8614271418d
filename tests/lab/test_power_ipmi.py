"""Power faults through the IPMI backend (pyghmi) against one OpenIPMI ipmi_sim per lab node.

The `ipmi` add-on gives every node a BMC on 127.0.0.1 whose chassis control really powers the
lab node (a power down kills the node, a soft-off runs its own `shutdown`). The tests act
through the public API and the human API, and look at the result from outside: SSH, the lab
supervisor, the node's boot id and ipmitool talking to the same BMC.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import yaml
from pyghmi.exceptions import IpmiException  # type: ignore[import-untyped]

import faultline
from faultline.drivers import power_ipmi
from faultline.drivers.power import PowerBackend, PowerError, PowerTarget, build_backend
from faultline.lab import Lab
from faultline.models.config import BmcSpec, PowerConfig
from faultline.models.errors import ActionError
from faultline.models.faults import FaultKind, FaultSpec
from faultline.models.records import RecordPhase
from lab_observe import NODES, eventually
from lab_support import addon_lab, recovering_cloud

pytestmark = pytest.mark.lab

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
T = TypeVar("T")


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ilab(lab_root: Path) -> Iterator[Lab]:
    with addon_lab(lab_root, "ipmi-lab", ("ipmi",)) as the_lab:
        yield the_lab


@pytest.fixture
def healthy(ilab: Lab) -> Lab:
    ilab.reset_state()
    return ilab


@pytest.fixture
def icloud(healthy: Lab, tmp_path: Path) -> Iterator[Any]:
    with recovering_cloud(healthy.config_path, tmp_path) as the_cloud:
        yield the_cloud


# -- looking from outside ------------------------------------------------------------------------


def bmc(lab: Lab, node: str) -> dict[str, Any]:
    data = yaml.safe_load(lab.config_path.read_text())
    (entry,) = [n for n in data["discovery"]["static"]["nodes"] if n["fqdn"] == node]
    found: dict[str, Any] = entry["bmc"]
    return found


def ipmitool_power(lab: Lab, node: str) -> str:
    """The node's power as its BMC reports it to ipmitool: on | off."""
    b = bmc(lab, node)
    argv = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", b["address"], "-p", str(b["port"])]
    argv += ["-U", b["username"], "-f", b["passwordFile"], "chassis", "power", "status"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Chassis Power is "), done.stdout
    return done.stdout.split()[-1]


def ssh(lab: Lab, node: str, command: str = "true") -> subprocess.CompletedProcess[str]:
    """A fresh OpenSSH client, host key verified (ConnectTimeout 5 s)."""
    return subprocess.run(
        lab.ssh_argv(node, command), capture_output=True, text=True, timeout=30, check=False
    )


def answers(lab: Lab, node: str) -> bool:
    return ssh(lab, node).returncode == 0


def boot_id(lab: Lab, node: str) -> str:
    """Read over SSH: proves the node answers, and which boot it is in."""
    done = ssh(lab, node, BOOT_ID)
    assert done.returncode == 0, f"{node} does not answer SSH: {done.stderr.strip()}"
    return done.stdout.strip()


def boots(lab: Lab) -> dict[str, int]:
    return {n.name: n.boots for n in lab.nodes}


def clean_redis_exits(lab: Lab, node: str) -> int:
    """How often redis on the node stopped cleanly (SIGTERM); a power cut leaves no line."""
    path = Path(lab.node(node).node_dir) / "log" / "redis" / "redis-server.log"
    return path.read_text(errors="replace").count("ready to exit") if path.exists() else 0


def assert_off(lab: Lab, node: str) -> None:
    assert lab.power(node, "status") == "off"
    assert ipmitool_power(lab, node) == "off"
    assert not answers(lab, node)


def assert_on(lab: Lab, node: str) -> None:
    assert lab.power(node, "status") == "on"
    assert ipmitool_power(lab, node) == "on"
    assert answers(lab, node)


# -- the add-on ---------------------------------------------------------------------------------


def test_every_node_has_its_own_bmc_with_a_private_password(ilab: Lab) -> None:
    entries = [bmc(ilab, n) for n in NODES]
    assert {e["address"] for e in entries} == {"127.0.0.1"}
    assert len({e["port"] for e in entries}) == len(NODES)
    password_file = Path(entries[0]["passwordFile"])
    assert password_file.stat().st_mode & 0o777 == 0o600
    data = yaml.safe_load(ilab.config_path.read_text())
    assert data["power"] == [{"driver": "ipmi"}]
    password = password_file.read_text().strip()
    assert password not in ilab.config_path.read_text()
    for node in NODES:
        assert ipmitool_power(ilab, node) == "on"


# -- os-faults API --------------------------------------------------------------------------------


def test_poweroff_cuts_the_node_and_recover_boots_it(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    before = {n: boot_id(lab, n) for n in NODES}
    boots_before = boots(lab)
    redis_exits = clean_redis_exits(lab, "node2")
    started = time.monotonic()
    result = icloud.get_nodes(["node2"]).poweroff()
    took_off = time.monotonic() - started
    assert result.ok
    (record,) = result.records
    assert record.identity == {"backend": "ipmi", "bmc": "127.0.0.1"}
    assert record.previous == {"power": "on", "bootId": before["node2"]}
    assert "powered off node2" in record.output
    assert_off(lab, "node2")
    assert clean_redis_exits(lab, "node2") == redis_exits  # a power cut, not a shutdown
    for other in ("node1", "node3"):  # untouched
        assert boot_id(lab, other) == before[other]
        assert boots(lab)[other] == boots_before[other]

    started = time.monotonic()
    recovered = icloud.recover(result)
    took_on = time.monotonic() - started
    assert recovered.ok
    assert recovered.records[0].phase == RecordPhase.RECOVERED
    assert boot_id(lab, "node2") not in ("", before["node2"])
    assert_on(lab, "node2")
    print(f"\nipmi poweroff -> off {took_off:.2f} s; recover -> SSH answers {took_on:.2f} s")


def test_poweroff_of_all_nodes_at_once_and_recover(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    result = icloud.get_nodes().poweroff()  # three BMCs in parallel
    assert result.ok and len(result.records) == len(NODES)
    for node in NODES:
        assert lab.power(node, "status") == "off"
        assert ipmitool_power(lab, node) == "off"
    assert icloud.recover(result).ok
    for node in NODES:
        assert_on(lab, node)


def test_poweroff_of_an_off_node_says_so_and_recover_leaves_it_off(
    healthy: Lab, icloud: Any
) -> None:
    lab = healthy
    lab.power("node3", "off")
    boots_before = boots(lab)
    result = icloud.get_nodes(["node3"]).poweroff()
    assert result.ok
    (record,) = result.records
    assert "already off" in record.output
    assert record.previous["power"] == "off"
    recovered = icloud.recover(result)
    assert recovered.ok
    assert "left off" in recovered.records[0].output
    assert_off(lab, "node3")
    assert boots(lab) == boots_before  # nothing booted anywhere


def test_poweron_of_an_off_node_and_recover_powers_it_off_again(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    lab.power("node1", "off")
    started = time.monotonic()
    result = icloud.get_nodes(["node1"]).poweron()
    took = time.monotonic() - started
    assert result.ok
    assert "node answers" in result.records[0].output
    assert_on(lab, "node1")
    recovered = icloud.recover(result)  # it was off before
    assert recovered.ok
    assert_off(lab, "node1")
    print(f"\nipmi poweron -> SSH answers {took:.2f} s")


def test_reset_boots_the_node_again(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    before = {n: boot_id(lab, n) for n in NODES}
    result = icloud.get_nodes(["node2"]).reset()
    assert result.ok
    assert "reset node2" in result.records[0].output
    after = boot_id(lab, "node2")
    assert after not in ("", before["node2"])
    assert boot_id(lab, "node1") == before["node1"]
    assert boot_id(lab, "node3") == before["node3"]
    recovered = icloud.recover(result)
    assert recovered.ok
    assert boot_id(lab, "node2") == after  # recovery of a reset boots nothing again
    assert_on(lab, "node2")


def test_reset_of_an_off_node_powers_it_on(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    lab.power("node3", "off")
    result = icloud.get_nodes(["node3"]).reset()
    assert result.ok
    assert "was off: powered on" in result.records[0].output
    assert_on(lab, "node3")
    icloud.recover(result)


def test_soft_shutdown_stops_services_cleanly_and_recover_powers_on(
    healthy: Lab, icloud: Any
) -> None:
    lab = healthy
    old = boot_id(lab, "node2")
    redis_exits = clean_redis_exits(lab, "node2")
    spec = FaultSpec(kind=FaultKind.POWER, action="shutdown")
    started = time.monotonic()
    result = icloud.act(spec, icloud.get_nodes(["node2"]))
    took = time.monotonic() - started
    assert result.ok
    assert "shut down node2" in result.records[0].output
    assert_off(lab, "node2")
    assert clean_redis_exits(lab, "node2") == redis_exits + 1  # redis got its SIGTERM
    recovered = icloud.recover(result)
    assert recovered.ok
    assert boot_id(lab, "node2") not in ("", old)
    assert_on(lab, "node2")
    print(f"\nipmi soft shutdown -> off {took:.2f} s")


def test_wrong_password_fails_naming_node_and_bmc_without_passwords(
    healthy: Lab, tmp_path: Path
) -> None:
    lab = healthy
    right = Path(bmc(lab, "node2")["passwordFile"]).read_text().strip()
    wrong = "Wr0ngPassw0rd"
    wrong_file = tmp_path / "wrong-password"
    wrong_file.write_text(wrong + "\n")
    wrong_file.chmod(0o600)
    data = yaml.safe_load(lab.config_path.read_text())
    for node in data["discovery"]["static"]["nodes"]:
        node["bmc"]["passwordFile"] = str(wrong_file)
    config = tmp_path / "target.yaml"
    config.write_text(yaml.safe_dump(data))
    before = boots(lab)
    with faultline.connect(config_filename=config) as cloud:
        with pytest.raises(ActionError) as caught:
            cloud.get_nodes(["node2"]).poweroff()
        message = str(caught.value)
        port = bmc(lab, "node2")["port"]
        assert f"authentication refused by BMC 127.0.0.1:{port} for node2" in message
        assert wrong not in message and right not in message
        record = caught.value.result.records[0]
        assert record.phase == RecordPhase.FAILED
        assert wrong not in record.model_dump_json() and right not in record.model_dump_json()
    assert_on(lab, "node2")
    assert boots(lab) == before  # nothing was powered off


# -- human API -----------------------------------------------------------------------------------


def test_human_poweroff_one_node_with_memcached_then_recover(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    result = faultline.human_api(icloud, "poweroff one node with memcached service")
    assert result.ok
    (record,) = result.records
    node = record.node
    assert_off(lab, node)
    assert all(lab.power(n, "status") == "on" for n in NODES if n != node)
    assert icloud.recover(result).ok
    assert_on(lab, node)


def test_human_reset_node2(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    old = boot_id(lab, "node2")
    result = faultline.human_api(icloud, "reset node2 node")
    assert result.ok
    assert boot_id(lab, "node2") not in ("", old)
    icloud.recover(result)


def test_human_poweroff_for_seconds_is_held_then_recovered(healthy: Lab, icloud: Any) -> None:
    lab = healthy
    old = boot_id(lab, "node3")
    boots_before = boots(lab)
    started = time.monotonic()
    result = faultline.human_api(icloud, "poweroff node3 node for 2 seconds")
    assert time.monotonic() - started >= 2
    (record,) = result.records
    assert record.phase == RecordPhase.RECOVERED
    assert [e.phase for e in record.events][-3:] == [
        RecordPhase.INJECTED,
        RecordPhase.RECOVERING,
        RecordPhase.RECOVERED,
    ]
    assert boots(lab)["node3"] == boots_before["node3"] + 1  # it was off and booted again
    eventually(lambda: lab.power("node3", "status") == "on", 30, "node3 on")
    assert boot_id(lab, "node3") not in ("", old)
    assert ipmitool_power(lab, "node3") == "on"


# -- the driver's retries and messages (a scripted pyghmi, no BMC) --------------------------------


class FakeCommand:
    """Stands in for pyghmi's Command: `outcomes` scripts what each call does."""

    outcomes: ClassVar[list[Exception | None]] = []
    calls: ClassVar[list[str]] = []
    power: ClassVar[str] = "on"
    soft_off_works: ClassVar[bool] = True

    def __init__(self, **kwargs: Any) -> None:
        assert isinstance(kwargs["password"], bytes)  # see _Session._login
        self.ipmi_session = self
        self._next("login")

    def _next(self, call: str) -> None:
        FakeCommand.calls.append(call)
        outcome = FakeCommand.outcomes.pop(0) if FakeCommand.outcomes else None
        if outcome is not None:
            raise outcome

    def logout(self) -> None:
        pass

    def get_power(self) -> dict[str, str]:
        self._next("get")
        return {"powerstate": FakeCommand.power}

    def set_power(self, state: str, wait: bool = False) -> dict[str, str]:
        self._next(f"set {state}")
        if state in ("on", "off"):
            FakeCommand.power = state
        elif state == "shutdown" and FakeCommand.soft_off_works:
            FakeCommand.power = "off"
        return {"pendingpowerstate": state}


@pytest.fixture
def fake_ipmi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[PowerBackend, PowerTarget]:
    monkeypatch.setattr("faultline.drivers.power_ipmi.ipmi_command.Command", FakeCommand)
    monkeypatch.setattr(power_ipmi, "BACKOFF", 0.0)
    monkeypatch.setattr(power_ipmi, "POLL", 0.0)
    FakeCommand.outcomes, FakeCommand.calls = [], []
    FakeCommand.power, FakeCommand.soft_off_works = "on", True
    secret = tmp_path / "password"
    secret.write_text("s3cret-Pass\n")
    config = PowerConfig(driver="ipmi", args={"retries": 2, "timeout": 0.05})
    spec = BmcSpec(address="192.0.2.7", port=6230, username="admin", password_file=str(secret))
    return build_backend(config), PowerTarget("node1", "10.0.0.1", bmc=spec)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_a_busy_bmc_is_asked_again(fake_ipmi: tuple[PowerBackend, PowerTarget]) -> None:
    backend, node = fake_ipmi
    FakeCommand.outcomes = [None, None, IpmiException("Node Busy")]  # login, get, set off
    assert run(backend.power_off(node)).startswith("powered off node1 through BMC 192.0.2.7:6230")
    assert FakeCommand.calls.count("set off") == 2


def test_an_unanswered_reset_is_not_sent_twice(
    fake_ipmi: tuple[PowerBackend, PowerTarget],
) -> None:
    backend, node = fake_ipmi
    FakeCommand.outcomes = [None, None, IpmiException("timeout")]  # login, get, set reset
    with pytest.raises(PowerError, match=r"BMC 192\.0\.2\.7:6230 for node1: chassis control reset"):
        run(backend.reset(node))
    assert FakeCommand.calls.count("set reset") == 1


def test_refused_login_and_odd_errors_never_show_the_password(
    fake_ipmi: tuple[PowerBackend, PowerTarget],
) -> None:
    backend, node = fake_ipmi
    FakeCommand.outcomes = [IpmiException("Incorrect password provided")]
    with pytest.raises(PowerError) as caught:
        run(backend.power_off(node))
    assert "authentication refused by BMC 192.0.2.7:6230 for node1" in str(caught.value)
    assert FakeCommand.calls == ["login"]  # not retried
    FakeCommand.outcomes, FakeCommand.calls = [None, IpmiException("bad s3cret-Pass")], []
    with pytest.raises(PowerError) as caught:
        run(backend.state(node))
    assert "s3cret-Pass" not in str(caught.value) and "***" in str(caught.value)


def test_a_soft_shutdown_that_never_ends_names_node_and_bmc(
    fake_ipmi: tuple[PowerBackend, PowerTarget],
) -> None:
    backend, node = fake_ipmi
    FakeCommand.soft_off_works = False  # the operating system ignores the ACPI request
    with pytest.raises(PowerError, match=r"node1 is not off 0\.05 s after a soft-off"):
        run(backend.shutdown(node))

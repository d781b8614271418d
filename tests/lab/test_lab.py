"""The lab is real: own daemons, own process table, own links, own power, own OOM."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faultline.lab import Lab, LabError
from faultline.lab.commands import lab as lab_cli
from faultline.lab.system import all_pids, pid_namespace
from faultline.models.config import parse_config

pytestmark = pytest.mark.lab


def ssh(lab: Lab, node: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lab.ssh_argv(node, command), capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def boot_id(lab: Lab, node: str) -> str | None:
    try:
        result = lab.exec(node, ["cat", "/run/faultline-lab/boot-id"], timeout=5)
    except (LabError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def service_ok(lab: Lab, node: str, service: str) -> bool:
    return lab.exec(node, ["service", service, "status"]).returncode == 0


def assert_dead_host(ip: str) -> None:
    """A powered-off node does not refuse connections, it does not answer at all."""
    try:
        with socket.create_connection((ip, 22), timeout=1.5):
            pass
    except TimeoutError:
        return
    except OSError as exc:
        assert exc.errno in (errno.EHOSTUNREACH, errno.ETIMEDOUT), exc
        return
    raise AssertionError(f"{ip}:22 accepted a connection")


def host_pids_of(comm: str) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                found.append(pid)
        except OSError:
            continue
    return found


def test_target_config_is_a_valid_faultline_config(lab: Lab) -> None:
    data = yaml.safe_load(lab.config_path.read_text())
    config = parse_config(data)
    assert [(n.fqdn, n.ip) for n in config.nodes] == [(n.fqdn, n.ip) for n in lab.nodes]
    assert config.nodes[0].labels == {"role": "controller"}
    assert config.services["memcached"].unit == "memcached"
    assert config.services["redis"].port is not None
    assert config.services["redis"].port.number == 6379
    assert config.networks == {"management": "eth1"}
    assert data["ssh"]["privateKeyFile"] == str(lab.private_key_path)
    assert lab.private_key_path.stat().st_mode & 0o077 == 0
    for node in lab.nodes:
        assert (
            f"{node.fqdn},{node.ip},{node.mgmt_ip} ssh-ed25519 " in lab.known_hosts_path.read_text()
        )


def test_each_node_runs_its_own_daemons_and_sees_only_its_processes(healthy_lab: Lab) -> None:
    lab = healthy_lab
    namespaces = set()
    for node in lab.nodes:
        ps = lab.exec(node.name, ["ps", "-eo", "pid=,comm="], check=True).stdout
        procs = {int(pid): comm for pid, comm in (line.split(None, 1) for line in ps.splitlines())}
        assert procs[1] == "tini"
        names = sorted(procs.values())
        for daemon in ("sshd", "memcached", "redis-server"):
            assert names.count(daemon) == 1, ps
        # tini, sleep, 3 daemons, this ps; plus the containers' engines and processes.
        engines = {"dockerd", "containerd", "containerd-shim", "conmon", "httpd", "sh"}
        assert len([c for c in procs.values() if c not in engines]) <= 7, ps
        assert lab.exec(node.name, ["hostname"], check=True).stdout.strip() == node.fqdn
        assert node.init_pid is not None
        namespaces.add(pid_namespace(node.init_pid))
    assert len(namespaces) == len(lab.nodes)
    mine = {pid for pid in host_pids_of("memcached") if pid_namespace(pid) in namespaces}
    assert len(mine) == len(lab.nodes)


def test_ssh_verifies_the_node_host_keys(healthy_lab: Lab, tmp_path: Path) -> None:
    lab = healthy_lab
    result = ssh(lab, "node1", "hostname; echo $HOME; getent hosts node2")
    assert result.returncode == 0, result.stderr
    hostname, home, hosts = result.stdout.splitlines()
    assert (hostname, home) == ("node1", "/root")
    assert hosts.split()[0] == lab.node("node2").mgmt_ip

    # node2's key presented for node1's address: the client must refuse.
    lines = lab.known_hosts_path.read_text().splitlines()
    node1_ip, node2_key = lab.node("node1").ip, lines[1].split(None, 1)[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{node1_ip} {node2_key}\n")
    argv = [
        f"UserKnownHostsFile={wrong}" if a.startswith("UserKnownHostsFile=") else a
        for a in lab.ssh_argv("node1", "true")
    ]
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 255
    assert "host key" in refused.stderr.lower()


def test_services_are_controlled_like_on_debian(healthy_lab: Lab) -> None:
    lab = healthy_lab
    pid = lab.exec("node1", ["cat", "/run/memcached.pid"], check=True).stdout.strip()
    result = ssh(lab, "node1", "service memcached restart && service memcached status")
    assert result.returncode == 0, result.stderr
    assert f"(pid {pid})" not in result.stdout
    assert ssh(lab, "node1", "service redis-server stop").returncode == 0
    assert not service_ok(lab, "node1", "redis-server")
    assert service_ok(lab, "node2", "redis-server")
    assert ssh(lab, "node1", "service redis-server start").returncode == 0
    assert service_ok(lab, "node1", "redis-server")


def test_killing_memcached_on_node1_leaves_node2_alone(healthy_lab: Lab) -> None:
    lab = healthy_lab
    # Memcached of node2, node3 and the host itself (other labs may run beside us).
    watched = {pid_namespace(lab.node(n).init_pid or 1) for n in ("node2", "node3")}
    watched.add(pid_namespace(os.getpid()))

    def elsewhere() -> set[int]:
        return {p for p in host_pids_of("memcached") if pid_namespace(p) in watched}

    before = elsewhere()
    # The os-faults way: grep the process table and kill whatever matches.
    kill = "ps ax | grep '[m]emcached' | awk '{print $1}' | xargs kill -9"
    result = ssh(lab, "node1", kill)
    assert result.returncode == 0, result.stderr
    wait_for("memcached to die on node1", lambda: not service_ok(lab, "node1", "memcached"))
    assert service_ok(lab, "node2", "memcached")
    assert service_ok(lab, "node3", "memcached")
    assert elsewhere() == before


def test_management_link_down_cuts_node_to_node_but_not_ssh(healthy_lab: Lab) -> None:
    lab = healthy_lab
    probe = ["nc", "-z", "-w", "2", "node2", "11211"]
    stats = lab.exec("node1", "printf 'stats\\r\\nquit\\r\\n' | nc -w 2 node2 11211")
    assert "STAT pid" in stats.stdout
    assert lab.exec("node1", probe).returncode == 0

    result = ssh(lab, "node1", "ip link set eth1 down")
    assert result.returncode == 0, result.stderr

    assert lab.exec("node1", probe).returncode != 0
    back = ["nc", "-z", "-w", "2", "node1", "11211"]
    assert lab.exec("node2", back).returncode != 0
    assert ssh(lab, "node1", "true").returncode == 0
    assert lab.exec("node3", probe).returncode == 0


def test_reboot_inside_a_node_boots_it_again(healthy_lab: Lab) -> None:
    lab = healthy_lab
    old_id, old_init = boot_id(lab, "node2"), lab.node("node2").init_pid
    result = ssh(lab, "node2", "reboot")
    assert result.returncode == 0, result.stderr

    wait_for("a new boot id", lambda: boot_id(lab, "node2") not in (None, old_id))
    lab.wait_ready("node2")
    assert lab.power("node2", "status") == "on"
    assert lab.node("node2").init_pid != old_init
    for service in ("memcached", "redis-server", "ssh"):
        assert service_ok(lab, "node2", service)
    assert ssh(lab, "node2", "true").returncode == 0


@pytest.mark.parametrize("command", ["poweroff", "shutdown -h now"])
def test_power_off_inside_a_node_keeps_it_off(healthy_lab: Lab, command: str) -> None:
    lab = healthy_lab
    result = ssh(lab, "node3", command)
    assert result.returncode == 0, result.stderr

    wait_for("node3 to power off", lambda: lab.power("node3", "status") == "off")
    time.sleep(1.0)
    assert lab.power("node3", "status") == "off"
    assert_dead_host(lab.node("node3").ip)
    with pytest.raises(LabError, match="powered off"):
        lab.exec("node3", "true")

    assert lab.power("node3", "on") == "on"
    assert ssh(lab, "node3", "true").returncode == 0
    assert service_ok(lab, "node3", "memcached")


def test_power_control_from_outside(healthy_lab: Lab) -> None:
    lab = healthy_lab
    first = boot_id(lab, "node1")
    assert lab.power("node1", "off") == "off"
    assert lab.power("node1", "status") == "off"
    assert_dead_host(lab.node("node1").ip)
    assert lab.power("node1", "off") == "off"

    assert lab.power("node1", "on") == "on"
    second = boot_id(lab, "node1")
    assert second not in (None, first)
    assert ssh(lab, "node1", "true").returncode == 0

    assert lab.power("node1", "reset") == "on"
    assert boot_id(lab, "node1") not in (None, second)


def test_power_cli(healthy_lab: Lab) -> None:
    lab = healthy_lab
    runner = CliRunner()
    state_dir = ["--state-dir", str(lab.state_dir)]
    status = runner.invoke(lab_cli, ["status", *state_dir])
    assert status.exit_code == 0, status.output
    assert status.output.count(" on ") == len(lab.nodes)
    power = runner.invoke(lab_cli, ["power", "node2", "status", *state_dir])
    assert (power.exit_code, power.output) == (0, "on\n")
    unknown = runner.invoke(lab_cli, ["power", "node9", "status", *state_dir])
    assert unknown.exit_code != 0
    assert "no lab node 'node9'" in unknown.output


def test_oom_hog_is_killed_inside_the_node_only(healthy_lab: Lab) -> None:
    lab = healthy_lab
    before = {n.name: lab.oom_kills(n.name) for n in lab.nodes}
    sshd = lab.exec("node1", ["cat", "/run/sshd.pid"], check=True).stdout

    result = ssh(lab, "node1", "tail /dev/zero; echo rc=$?", timeout=120)

    assert "rc=137" in result.stdout, (result.stdout, result.stderr)
    assert lab.oom_kills("node1") > before["node1"]
    assert lab.oom_kills("node2") == before["node2"]
    assert lab.exec("node1", ["cat", "/run/sshd.pid"], check=True).stdout == sshd
    assert ssh(lab, "node1", "true").returncode == 0


def test_reset_state_heals_what_faults_broke(healthy_lab: Lab) -> None:
    lab = healthy_lab
    break_it = (
        "kill -STOP $(cat /run/memcached.pid); kill -9 $(cat /run/redis/redis-server.pid); "
        "iptables -A INPUT -p tcp --dport 11211 -j DROP; ip link set eth1 down"
    )
    lab.exec("node2", break_it, check=True)
    lab.power("node3", "off")

    fixes = lab.reset_state()

    assert fixes["node1"] == []
    assert "fixed: redis-server started" in fixes["node2"]
    assert "fixed: iptables rules flushed" in fixes["node2"]
    assert "fixed: eth1 up" in fixes["node2"]
    assert fixes["node3"] == ["powered on (was off)"]
    assert lab.exec("node2", ["iptables", "-S", "INPUT"]).stdout.strip() == "-P INPUT ACCEPT"
    assert lab.exec("node1", ["nc", "-z", "-w", "2", "node2", "11211"]).returncode == 0
    assert lab.reset_state() == {n.name: [] for n in lab.nodes}


def test_power_helper_refuses_outside_a_lab_node(lab: Lab, tmp_path: Path) -> None:
    # In a throwaway PID namespace: if the refusal ever broke, only that namespace would end.
    reboot = tmp_path / "reboot"
    reboot.symlink_to(lab.state_dir / "bin" / "node_power.py")
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", str(reboot), "-f"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "refusing" in result.stderr


def test_down_removes_everything_it_made(lab_root: Path) -> None:
    from faultline.lab import network

    small = Lab(state_dir=lab_root / "small", nodes=1, temporary=True)
    state = small.up()
    node = state.nodes[0]
    assert node.init is not None and state.supervisor is not None
    init, supervisor, cgroup = node.init, state.supervisor, Path(node.cgroup_path)
    assert cgroup.is_dir()

    small.down()

    assert not [n for n in network.netns_names() if n.startswith(state.prefix)]
    assert not [n for n in network.root_links() if n.startswith(state.prefix)]
    assert not cgroup.exists()
    assert not init.alive()
    assert not supervisor.alive()
    assert not (small.state_dir / "state.json").exists()
    small.down()  # idempotent
    assert os.path.isdir(small.state_dir)  # keys and logs stay for the next `up`

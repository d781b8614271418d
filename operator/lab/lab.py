"""The `Lab`: builds, drives and tears down a set of lab nodes (see the package docstring)."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultline.lab import (
    addons,
    cgroups,
    config,
    containers,
    control,
    health,
    network,
    packages,
    registry,
)
from faultline.lab import node as lab_node
from faultline.lab.control import OFF_TIMEOUT
from faultline.lab.layout import LabLayout, index_of
from faultline.lab.ssh_keys import ensure_keys, known_hosts, public_key
from faultline.lab.state import LabNode, LabState, load_state, remove_state, save_state
from faultline.lab.system import LabError

POWER_ACTIONS = ("on", "off", "reset", "status")
CLIENT_KEY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
TARGET_FILE = "target.yaml"
SUPERVISOR_LOG = "supervisor.log"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    fqdn: str
    ip: str
    mgmt_ip: str
    power: str
    reachable: bool
    init_pid: int | None
    boots: int


class Lab:
    """N lab nodes described by a state dir; see `up`, `exec`, `power`, `reset_state`, `down`.

    A `temporary` lab (a test session's) belongs to the process that brings it up: once that
    process is gone, `cleanup_leftovers()` tears it down even though its supervisor runs.
    """

    def __init__(
        self,
        state_dir: Path = Path(".lab"),
        nodes: int = 3,
        index: int | None = None,
        temporary: bool = False,
        container_tools: Sequence[str] = ("podman",),
        addons: Sequence[str] = (),
    ):
        self.state_dir = Path(state_dir).absolute()
        self.container_tools = tuple(container_tools)
        self.addons = tuple(addons)
        self.node_count = nodes
        self.index = index
        self.temporary = temporary
        self._supervisor: subprocess.Popen[bytes] | None = None

    @classmethod
    def load(cls, state_dir: Path) -> Lab:
        state = load_state(Path(state_dir).absolute())
        if state is None:
            raise LabError(f"no lab in {state_dir} (run `faultline lab up` first)")
        return cls(state_dir, nodes=len(state.nodes), index=state.index)

    # -- files ---------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.state_dir / TARGET_FILE

    @property
    def private_key_path(self) -> Path:
        return self.state_dir / CLIENT_KEY

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / KNOWN_HOSTS

    def state(self) -> LabState:
        state = load_state(self.state_dir)
        if state is None:
            raise LabError(f"no lab in {self.state_dir}")
        return state

    @property
    def nodes(self) -> list[LabNode]:
        """The nodes as recorded now (init pids change with every boot)."""
        return self.state().nodes

    def node(self, name: str) -> LabNode:
        return self.state().node(name)

    # -- life cycle ----------------------------------------------------------------------

    def up(self, timeout: float = 120.0) -> LabState:
        """Build the lab (or finish bringing an existing one up); returns once every node
        answers SSH. A dead lab left in the state dir is torn down and rebuilt."""
        existing = load_state(self.state_dir)
        if existing is not None:
            supervisor = existing.supervisor
            if supervisor is not None and supervisor.alive():
                if len(existing.nodes) != self.node_count:
                    raise LabError(
                        f"a lab with {len(existing.nodes)} nodes is up in {self.state_dir};"
                        " run `lab down` first"
                    )
                for n in existing.nodes:
                    if n.power == "off":
                        self.power(n.name, "on", timeout)
                control.request(self.state_dir, {"command": "wait", "timeout": timeout}, timeout)
                return self.state()
            self.down()
        packages.ensure()
        for tool in self.container_tools:
            containers.ensure_packages(tool)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)  # daemons of other users (Ganeti) look inside
        index = registry.claim(
            self.state_dir, self.index, busy=network.lab_indexes(), temporary=self.temporary
        )
        try:
            self._build(LabLayout(index, self.node_count))
            self._start_supervisor()
            control.request(
                self.state_dir, {"command": "wait", "timeout": timeout}, timeout=timeout + 5
            )
            for name in self.addons:
                addons.merge_into_target(self.config_path, addons.load(name).up(self))
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        self.index = index
        return self.state()

    def _build(self, layout: LabLayout) -> None:
        lab_node.install_assets(self.state_dir)
        (self.state_dir / "nodes").mkdir(mode=0o755, exist_ok=True)
        cgroup_base = cgroups.memory_base()
        nodes = [
            LabNode(
                name=n.name,
                fqdn=n.name,
                ip=n.ip,
                mgmt_ip=n.mgmt_ip,
                netns=n.netns,
                control_veth=n.control_veth,
                mgmt_veth=n.mgmt_veth,
                cgroup_path=str(cgroup_base / f"{layout.prefix}{n.name}"),
                role="controller" if n.number == 1 else "compute",
                node_dir=str(self.state_dir / "nodes" / n.name),
            )
            for n in layout.nodes
        ]
        for n in nodes:
            (Path(n.node_dir) / "ssh").mkdir(mode=0o755, parents=True, exist_ok=True)
        ensure_keys(
            [(self.private_key_path, "faultline-lab")]
            + [(lab_node.host_key_path(n), f"root@{n.fqdn}") for n in nodes]
        )
        client_key = public_key(self.private_key_path)
        for tool in self.container_tools:
            containers.build_image(self.state_dir, tool)
        for n in nodes:
            lab_node.prepare_dir(n, nodes, client_key)
            lab_node.prepare_containers(n, self.state_dir, self.container_tools)
        self.known_hosts_path.write_text(
            known_hosts(
                ([n.fqdn, n.ip, n.mgmt_ip], public_key(lab_node.host_key_path(n))) for n in nodes
            )
        )
        self.config_path.write_text(
            config.target_yaml(
                nodes, self.private_key_path, self.known_hosts_path, self.container_tools
            )
        )
        save_state(
            LabState(
                index=layout.index,
                state_dir=str(self.state_dir),
                prefix=layout.prefix,
                bridge=layout.bridge,
                hub_netns=layout.hub_netns,
                gateway=layout.gateway,
                nodes=nodes,
                created=time.time(),
            )
        )
        for n in nodes:
            cgroups.create(Path(n.cgroup_path))
        network.build(layout)

    def _start_supervisor(self) -> None:
        log_path = self.state_dir / SUPERVISOR_LOG
        with open(log_path, "ab") as log:
            # -P: never let the working directory shadow modules (the source dir is
            # called `operator`, like the stdlib module).
            self._supervisor = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "faultline.lab.supervisor",
                    "--state-dir",
                    str(self.state_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                control.request(self.state_dir, {"command": "ping"}, timeout=5)
                return
            except LabError:
                if self._supervisor.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise LabError(f"lab supervisor exited at start:\n{tail}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def down(self) -> None:
        """Tear everything down: node processes, namespaces, links, cgroups, claims.

        Idempotent, and works on half-built labs (it also sweeps by name prefix)."""
        try:
            state = load_state(self.state_dir)
        except LabError:
            state = None
        for name in reversed(addons.started(self)):
            with contextlib.suppress(Exception):
                addons.load(name).down(self)
        indexes = {c.index for c in registry.claims().values() if c.state_dir == self.state_dir}
        if state is not None:
            self._stop_supervisor(state)
            indexes.add(state.index)
        for index in indexes:
            destroy(index, state.nodes if state is not None else [])
            registry.release(index, self.state_dir)
        network.remove_guard_routes_if_unused()
        remove_state(self.state_dir)
        (self.state_dir / control.SOCKET_NAME).unlink(missing_ok=True)

    def _stop_supervisor(self, state: LabState) -> None:
        supervisor = state.supervisor
        if supervisor is not None and supervisor.alive():
            with contextlib.suppress(LabError):
                control.request(self.state_dir, {"command": "stop"}, timeout=OFF_TIMEOUT + 5)
            if not supervisor.wait_gone(5):
                supervisor.kill(signal.SIGKILL)
                supervisor.wait_gone(5)
        if self._supervisor is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._supervisor.wait(5)  # reap our own child
            self._supervisor = None

    # -- driving nodes -------------------------------------------------------------------

    def power(self, node_name: str, action: str, timeout: float = 60.0) -> str:
        """Power control like a BMC: on | off | reset | status; returns the power state."""
        if action not in POWER_ACTIONS:
            raise LabError(f"unknown power action {action!r} (one of {', '.join(POWER_ACTIONS)})")
        name = self.node(node_name).name
        message = {"command": "power", "node": name, "action": action, "timeout": timeout}
        answer = control.request(self.state_dir, message, timeout=timeout + OFF_TIMEOUT + 5)
        return str(answer["power"])

    def wait_ready(self, node_name: str | None = None, timeout: float = 60.0) -> None:
        """Wait until the node (or every node) answers SSH; fails when it stays off."""
        message: dict[str, Any] = {"command": "wait", "timeout": timeout}
        if node_name is not None:
            message["node"] = self.node(node_name).name
        control.request(self.state_dir, message, timeout=timeout + 5)

    def exec(
        self,
        node_name: str,
        command: Sequence[str] | str,
        *,
        check: bool = False,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a powered-on node without SSH (a string runs under sh -c)."""
        node = self.node(node_name)
        init = node.init
        if init is None or not init.alive():
            raise LabError(f"{node.name} is powered off")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        return subprocess.run(
            lab_node.exec_argv(node, init.pid, argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def pids(self, node_name: str, process_name: str) -> list[str]:
        """pids of the processes named `process_name` inside a node.

        The name is bracketed (`[m]emcached`) so the looking process, alive while a fault
        handler runs `pgrep -f memcached` on the node, never looks like the daemon itself.
        """
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", process_name):
            raise LabError(f"process name {process_name!r}: use letters, digits, _ . -")
        pattern = f"[{process_name[0]}]{process_name[1:]}"
        return self.exec(node_name, ["pgrep", "-x", pattern]).stdout.split()

    def ssh_argv(self, node_name: str, command: str) -> list[str]:
        """The OpenSSH command line that runs `command` on a node, host keys verified."""
        node = self.node(node_name)
        return [
            "ssh",
            "-F",
            "none",
            "-i",
            str(self.private_key_path),
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            f"root@{node.ip}",
            command,
        ]

    def cgroup(self, node_name: str) -> Path:
        return Path(self.node(node_name).cgroup_path)

    def oom_kills(self, node_name: str) -> int:
        return cgroups.oom_kills(self.cgroup(node_name))

    def status(self) -> list[NodeStatus]:
        state = self.state()
        supervisor = state.supervisor
        live = supervisor is not None and supervisor.alive()
        with ThreadPoolExecutor(max_workers=max(1, len(state.nodes))) as pool:
            reachable = list(pool.map(lambda n: _ssh_banner(n.ip), state.nodes))
        return [
            NodeStatus(
                name=n.name,
                fqdn=n.fqdn,
                ip=n.ip,
                mgmt_ip=n.mgmt_ip,
                power=n.power if live else "unknown (no supervisor)",
                reachable=ok,
                init_pid=n.init_pid,
                boots=n.boots,
            )
            for n, ok in zip(state.nodes, reachable, strict=True)
        ]

    def reset_state(self, timeout: float = 60.0) -> dict[str, list[str]]:
        """Make every node healthy again: powered on, links up, firewall empty, no frozen
        processes, ssh, memcached and redis running. Returns what was fixed, per node."""
        names = [n.name for n in self.nodes]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            fixes = pool.map(lambda name: self._heal(name, timeout), names)
            return dict(zip(names, fixes, strict=True))

    def _heal(self, name: str, timeout: float) -> list[str]:
        fixes: list[str] = []
        for _ in range(3):  # a node may be powering itself off right now: retry
            power = self.power(name, "status")
            if power != "on":
                fixes.append(f"powered on (was {power})")
                self.power(name, "on", timeout)
            node = self.node(name)
            if node.init_pid is None:
                continue
            resumed = health.continue_stopped([node.init_pid])
            if resumed:
                fixes.append(f"resumed {len(resumed)} stopped process(es)")
            try:
                result = self.exec(name, lab_node.heal_argv(node), timeout=timeout)
            except LabError:
                continue
            if result.returncode == 0:
                return fixes + [line for line in result.stdout.splitlines() if line]
            if self.power(name, "status") == "on":
                detail = (result.stderr or result.stdout).strip()
                raise LabError(f"{name}: node-heal.sh failed (rc {result.returncode}): {detail}")
        raise LabError(f"{name}: could not be made healthy: it keeps powering off")


def _ssh_banner(ip: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def destroy(index: int, nodes: Sequence[LabNode] = ()) -> None:
    """Remove every kernel object of lab `index`: processes (via their cgroups and recorded
    init pids), namespaces, links and cgroups. Safe to repeat."""
    prefix = LabLayout(index, 1).prefix
    paths = {Path(n.cgroup_path) for n in nodes}
    with contextlib.suppress(LabError):
        base = cgroups.memory_base()
        paths |= {p for p in base.glob(f"{prefix}*") if p.is_dir()}
    for n in nodes:
        if n.init is not None:
            n.init.kill()
    for path in paths:
        cgroups.kill_all(path)
    network.teardown(prefix)
    for path in paths:
        cgroups.remove(path)
        containers.remove_cgroups(path.name)


def cleanup_leftovers() -> list[int]:
    """Tear down labs nobody runs any more (owner and supervisor gone) and lab objects
    nobody claims; live labs (a demo, another test run) are left alone. Returns indexes."""
    cleaned: list[int] = []
    for index, claim in registry.claims().items():
        if claim.live():
            continue
        with contextlib.suppress(LabError):
            state = load_state(claim.state_dir)
            if state is not None and state.index == index:
                Lab(claim.state_dir).down()
        destroy(index)
        registry.release(index)
        cleaned.append(index)
    base_names: list[str] = []
    with contextlib.suppress(LabError):
        base_names = [p.name for p in cgroups.memory_base().iterdir()]
    orphans = network.lab_indexes() | {i for i in map(index_of, base_names) if i is not None}
    for index in sorted(orphans):
        with registry.host_lock():
            if index in registry.claims():
                continue
            destroy(index)
        cleaned.append(index)
    if cleaned:
        network.remove_guard_routes_if_unused()
    return cleaned

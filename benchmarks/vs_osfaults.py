"""Faultline against os-faults, side by side, on the same lab nodes.

Each tool is driven through its own Python API with one connection kept open for the whole
run, like a long-running tool: Faultline through its os-faults compatible API
(`faultline.connect`), os-faults 0.3.0 through its API in a venv of its own (a driver
process started once, which times each call itself, so Python start-up and imports are not
charged to os-faults; each call's own `ansible-playbook` runs are). The floor is the bare
command over SSH connections that are already open (asyncssh, fan-out in parallel), as in
engine_vs_floor.py. Sides alternate call by call; a killed service is brought back between
calls outside any tool (untimed).

    sudo .venv/bin/python benchmarks/vs_osfaults.py [--nodes 3,10] [--runs 7] [--osf-runs 5]

The os-faults venv (os-faults==0.3.0 with the full `ansible` package: ansible-core alone
lacks the json callback os-faults parses) is created once under --venv and reused.
Prints medians in ms and the ratios os-faults / Faultline and Faultline / floor.
Nothing here is asserted beyond each call having done its job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import faultline
from faultline.api import load_config_file
from faultline.drivers.ssh import SshPool, SshTarget
from faultline.engine.engine import Engine
from faultline.engine.shell import ssh_target
from faultline.lab import Lab

OSF_REQUIREMENTS = ["os-faults==0.3.0", "ansible==12.3.0"]
DEFAULT_VENV = Path.home() / ".cache" / "faultline" / "osfaults-venv"
SERVICE = "memcached"

# (key, label, floor command, floor on one node only)
OPS: list[tuple[str, str, str, bool]] = [
    ("verify", "verify (cloud.verify())", "true", False),
    ("restart", "restart memcached, all its nodes", "service memcached restart", False),
    ("restart_named", "restart memcached, all nodes named", "service memcached restart", False),
    ("kill_pick", "kill memcached on one of its nodes", "pkill -KILL -x memcached", True),
    ("kill_named", "kill memcached on a named node", "pkill -KILL -x memcached", True),
]
KILLS = {"kill_pick", "kill_named"}

# The os-faults side: a small program run with the os-faults venv's Python. It connects
# once, then answers one JSON line per request on stdin. Each call is timed in-process, and
# every `ansible-playbook` os-faults spawns is counted and timed by wrapping the
# oslo.concurrency call os-faults makes for it.
DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    started = time.perf_counter()
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the replies
    from oslo_concurrency import processutils
    import os_faults

    spawns = []
    real_execute = processutils.execute

    def timed_execute(*cmd, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_execute(*cmd, **kwargs)
        finally:
            if cmd and cmd[0].endswith("ansible-playbook"):
                spawns.append((time.perf_counter() - t0) * 1000)

    processutils.execute = timed_execute
    imported = time.perf_counter()
    cloud = os_faults.connect(config_filename=sys.argv[1])
    svc = cloud.get_service("memcached")
    connected = time.perf_counter()
    t0 = time.perf_counter()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                    "--version"], capture_output=True, check=True)
    version_ms = (time.perf_counter() - t0) * 1000
    reply.write(json.dumps({
        "import_ms": (imported - started) * 1000,
        "connect_ms": (connected - imported) * 1000,
        "ansible_version_ms": version_ms,
    }) + "\\n")

    def ops(req):
        name = req["op"]
        if name == "verify":
            return cloud.verify(), None
        if name == "restart":
            return svc.restart(), None
        if name == "restart_named":
            return svc.restart(cloud.get_nodes()), None
        if name == "kill_pick":
            one = svc.get_nodes().pick()
            return svc.kill(one), one
        if name == "kill_named":
            one = cloud.get_nodes(fqdns=[req["node"]])
            return svc.kill(one), one
        if name == "start_all":
            return svc.start(), None
        if name == "start_named":
            one = cloud.get_nodes(fqdns=[req["node"]])
            return svc.start(one), one
        raise ValueError(name)

    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        del spawns[:]
        t0 = time.perf_counter()
        try:
            _, nodes = ops(req)
            out = {"ms": (time.perf_counter() - t0) * 1000}
            if nodes is not None:
                out["nodes"] = nodes.get_fqdns()
        except Exception as exc:
            out = {"ms": (time.perf_counter() - t0) * 1000,
                   "error": "%s: %s" % (type(exc).__name__, exc)}
        out["spawns"] = len(spawns)
        out["ansible_ms"] = sum(spawns)
        reply.write(json.dumps(out) + "\\n")
    """
)


# --- the os-faults venv and configuration -------------------------------------------------


def ensure_venv(venv: Path) -> Path:
    """Create the os-faults venv once; reinstall only if the pinned requirements changed."""
    python = venv / "bin" / "python"
    marker = venv / "faultline-requirements.txt"
    wanted = "\n".join(OSF_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"# creating the os-faults venv in {venv} (once; about a minute)", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *OSF_REQUIREMENTS],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        sys.exit(f"installing {' '.join(OSF_REQUIREMENTS)} failed:\n{pip.stdout}{pip.stderr}")
    marker.write_text(wanted)
    return python


def write_osfaults_files(lab: Lab, workdir: Path) -> Path:
    """os-faults config for the lab, plus the ansible.cfg that os-faults' Ansible reads.

    os-faults runs `ansible-playbook` in its working directory with no ANSIBLE_* setting
    but the stdout callback, so Ansible is configured by an ansible.cfg there. Its inventory
    sets `-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no` as ssh_common_args;
    OpenSSH keeps the first value of an option, and ssh_args come first, so the lab's
    known_hosts put there is what is checked. Ansible's own defaults are kept (ControlMaster
    with ControlPersist 60 s); forks=100 is what os-faults means to use (its
    ANSIBLE_FORKS), which 0.3.0 never passes on (Ansible's default is 5). Ansible's home
    and local temp dirs are kept in the working directory, out of $HOME.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    (workdir / "cp").mkdir(exist_ok=True)
    config = {
        "cloud_management": {"driver": "universal"},
        "node_discover": {
            "driver": "node_list",
            "args": [
                {
                    "ip": n.ip,
                    "fqdn": n.fqdn,
                    "auth": {"username": "root", "private_key_file": str(lab.private_key_path)},
                }
                for n in lab.nodes
            ],
        },
        "services": {
            SERVICE: {
                "driver": "system_service",
                "args": {"service_name": SERVICE, "grep": SERVICE},
            },
        },
    }
    ssh_args = " ".join(
        [
            "-C -o ControlMaster=auto -o ControlPersist=60s",  # Ansible's default ssh_args
            f"-o UserKnownHostsFile={lab.known_hosts_path} -o StrictHostKeyChecking=yes",
        ]
    )
    path = workdir / "os-faults.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "ansible.cfg").write_text(
        textwrap.dedent(
            f"""\
            [defaults]
            interpreter_python = /usr/bin/python3
            host_key_checking = True
            forks = 100
            retry_files_enabled = False
            home = {workdir / "ansible-home"}
            local_tmp = {workdir / "ansible-tmp"}

            [ssh_connection]
            ssh_args = {ssh_args}
            control_path_dir = {workdir / "cp"}
            """
        )
    )
    (workdir / "driver.py").write_text(DRIVER)
    return path


class OsFaults:
    """The os-faults driver process for one lab: connected once, one request at a time."""

    def __init__(self, python: Path, workdir: Path, config: Path) -> None:
        env = dict(os.environ)
        env["PATH"] = f"{python.parent}:{env.get('PATH', '')}"  # os-faults `which`es Ansible
        env["TMPDIR"] = str(workdir / "tmp")  # it leaves a temp dir per playbook run
        env.pop("ANSIBLE_CONFIG", None)
        self.workdir = workdir
        self.log = workdir / "driver.log"
        started = time.perf_counter()
        with self.log.open("w") as errors:
            self.proc = subprocess.Popen(
                [str(python), str(workdir / "driver.py"), str(config)],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                bufsize=1,
            )
        self.startup = self._read()
        self.startup["process_ms"] = (time.perf_counter() - started) * 1000

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"os-faults driver exited ({self.proc.wait()}):\n{tail}")
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, op: str, node: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        started = time.perf_counter()
        self.proc.stdin.write(json.dumps({"op": op, "node": node}) + "\n")
        out = self._read()
        out["round_trip_ms"] = (time.perf_counter() - started) * 1000
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Ansible's ControlPersist masters outlive the driver by up to 60 s: end them.
        for sock in (self.workdir / "cp").iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab"],
                capture_output=True,
                timeout=10,
            )


# --- the three sides ----------------------------------------------------------------------


class Floor:
    def __init__(self, config_path: Path) -> None:
        self.config = load_config_file(config_path)
        self.loop = asyncio.new_event_loop()
        self.pool = SshPool(self.config.ssh)
        nodes = Engine(self.config, self.pool).nodes
        self.targets: list[SshTarget] = [ssh_target(n, self.config) for n in nodes]

    async def _fan_out(self, command: str, targets: list[SshTarget]) -> None:
        results = await asyncio.gather(*(self.pool.run(t, command) for t in targets))
        bad = [r for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"floor command failed: {bad[0].describe()}")

    def run(self, command: str, one: bool) -> float:
        targets = self.targets[:1] if one else self.targets
        start = time.perf_counter()
        self.loop.run_until_complete(self._fan_out(command, targets))
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()


def faultline_call(cloud: faultline.CloudManagement, op: str, node: str) -> tuple[float, list[str]]:
    svc = cloud.get_service(SERVICE)
    acts: dict[str, Callable[[], Any]] = {
        "verify": cloud.verify,
        "restart": lambda: svc.restart(),
        "restart_named": lambda: svc.restart(cloud.get_nodes()),
        "kill_pick": lambda: svc.kill(svc.get_nodes().pick()),
        "kill_named": lambda: svc.kill(cloud.get_nodes(fqdns=[node])),
    }
    start = time.perf_counter()
    result = acts[op]()
    elapsed = (time.perf_counter() - start) * 1000
    nodes = [r.node for r in result.records] if op in KILLS else []
    return elapsed, nodes


# --- lab helpers (outside every tool, untimed) --------------------------------------------


def running(lab: Lab, fqdn: str) -> bool:
    name = next(n.name for n in lab.nodes if n.fqdn == fqdn)
    return bool(lab.pids(name, SERVICE))


def restore(lab: Lab, fqdns: list[str]) -> None:
    """Bring memcached back where it was killed (waiting for the old process to be gone)."""
    for node in lab.nodes:
        if node.fqdn not in fqdns:
            continue
        script = (
            f"for i in $(seq 50); do pgrep -x {SERVICE} >/dev/null || break; sleep 0.02; done; "
            f"service {SERVICE} start >/dev/null 2>&1; "
            f"for i in $(seq 100); do pgrep -x {SERVICE} >/dev/null && exit 0; sleep 0.02; done; "
            "exit 1"
        )
        if lab.exec(node.name, script).returncode != 0:
            raise RuntimeError(f"could not bring {SERVICE} back on {node.name}")


def all_running(lab: Lab) -> None:
    down = [n.fqdn for n in lab.nodes if not running(lab, n.fqdn)]
    if down:
        raise RuntimeError(f"{SERVICE} is not running on {down}")


# --- measurement --------------------------------------------------------------------------


def measure(
    lab: Lab, python: Path, workdir: Path, runs: int, osf_runs: int, check_start: bool
) -> dict[str, Any]:
    cloud = faultline.connect(config_filename=lab.config_path)
    floor = Floor(lab.config_path)
    osf = OsFaults(python, workdir, write_osfaults_files(lab, workdir))
    fqdns = [n.fqdn for n in lab.nodes]
    named = fqdns[0]
    samples: dict[str, dict[str, list[Any]]] = {
        op: {"faultline": [], "osfaults": [], "floor": []} for op, *_ in OPS
    }
    limits: list[str] = []
    try:
        # Warm-up, untimed: every side opens its connections (and Faultline its discovery).
        cloud.verify()
        cloud.get_service(SERVICE).get_nodes()
        floor.run("true", one=False)
        warm = osf.call("verify")
        if "error" in warm:
            raise RuntimeError(f"os-faults cannot verify the lab: {warm['error']}")
        for i in range(max(runs, osf_runs)):
            sides = ["faultline", "floor"] + (["osfaults"] if i < osf_runs else [])
            shift = i % len(sides)
            order = sides[shift:] + sides[:shift]  # who goes first rotates
            for op, _label, command, one in OPS:
                for side in order:
                    all_running(lab)
                    if side == "faultline":
                        ms, killed = faultline_call(cloud, op, named)
                        samples[op][side].append(ms)
                    elif side == "floor":
                        ms = floor.run(command, one)
                        killed = fqdns[:1] if op in KILLS else []
                        samples[op][side].append(ms)
                    else:
                        out = osf.call(op, named)
                        if "error" in out:
                            raise RuntimeError(f"os-faults {op}: {out['error']}")
                        killed = out.get("nodes", []) if op in KILLS else []
                        samples[op][side].append(out)
                    if op in KILLS:
                        if not killed or any(running(lab, k) for k in killed):
                            raise RuntimeError(f"{side} {op} did not kill {SERVICE}")
                        restore(lab, killed)
        if check_start:
            limits = check_start_after_kill(lab, osf, named)
    finally:
        osf.close()
        floor.close()
        cloud.close()
    return {"samples": samples, "startup": osf.startup, "limits": limits}


def check_start_after_kill(lab: Lab, osf: OsFaults, node: str) -> list[str]:
    """Can os-faults bring back a service it killed? Only with the node named."""
    notes = []
    all_running(lab)
    out = osf.call("kill_named", node)
    assert "error" not in out and not running(lab, node), out
    out = osf.call("start_all")
    back = running(lab, node)
    notes.append(
        f"`start()` after a kill on {node}: {'error ' + out['error'] if 'error' in out else 'ok'}"
        f", {SERVICE} on {node} {'running again' if back else 'still down'}"
        f" ({out['spawns']} ansible-playbook runs, {out['ms']:.0f} ms)"
    )
    if not back:
        out = osf.call("start_named", node)
        back = running(lab, node)
        notes.append(
            f"`start(cloud.get_nodes(fqdns=[{node!r}]))`: "
            f"{SERVICE} {'running again' if back else 'still down'} ({out['ms']:.0f} ms)"
        )
    if not back:
        restore(lab, [node])
    return notes


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,10", help="lab sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=7, help="runs for Faultline and the floor")
    parser.add_argument("--osf-runs", type=int, default=5, help="runs for os-faults (slow)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="os-faults venv")
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    began = time.monotonic()
    print(
        f"# medians in ms; Faultline and floor: {args.runs} runs, "
        f"os-faults: {args.osf_runs} runs, alternating"
    )
    head = (
        f"{'action':<36} {'nodes':>5} {'os-faults':>10} {'Faultline':>10} {'floor':>8} "
        f"{'osf/FL':>7} {'FL/floor':>8}"
    )
    detail: list[str] = []
    notes: list[str] = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="faultline-vs-osf-") as tmp:
        Path(tmp).chmod(0o755)
        print(head)
        for n, count in enumerate(int(x) for x in args.nodes.split(",")):
            lab = Lab(Path(tmp) / f"lab{count}", nodes=count, container_tools=())
            lab.up()
            try:
                got = measure(
                    lab, python, Path(tmp) / f"osf{count}", args.runs, args.osf_runs, n == 0
                )
            finally:
                lab.down()
            for op, label, *_ in OPS:
                s = got["samples"][op]
                osf = med([x["ms"] for x in s["osfaults"]])
                ours = med(s["faultline"])
                bare = med(s["floor"])
                print(
                    f"{label:<36} {count:>5} {osf:>10.0f} {ours:>10.1f} {bare:>8.1f} "
                    f"{osf / ours:>7.1f} {ours / bare:>8.2f}"
                )
                spawns = sorted({x["spawns"] for x in s["osfaults"]})
                calls = [x["ms"] for x in s["osfaults"]]
                detail.append(
                    f"{label:<36} {count:>5} {osf:>8.0f} "
                    f"{f'{min(calls):.0f}-{max(calls):.0f}':>11} "
                    f"{med([x['round_trip_ms'] for x in s['osfaults']]):>8.0f} "
                    f"{'/'.join(map(str, spawns)):>7} "
                    f"{med([x['ansible_ms'] for x in s['osfaults']]):>11.0f} "
                    f"{med([x['ms'] - x['ansible_ms'] for x in s['osfaults']]):>9.1f}"
                )
            st = got["startup"]
            detail.append(
                f"{'(driver: import / connect / process)':<36} {count:>5} "
                f"{st['import_ms']:>8.0f} {'':>11} {st['connect_ms']:>8.0f} {'':>7} "
                f"{st['process_ms']:>11.0f}"
            )
            detail.append(
                f"{'(ansible-playbook --version alone)':<36} {count:>5} "
                f"{st['ansible_version_ms']:>8.0f}"
            )
            notes += [f"# os-faults, {count} nodes: {note}" for note in got["limits"]]
    print()
    print("# os-faults per call: in-process ms, round trip ms from this process,")
    print("# ansible-playbook runs per call, ms inside them, ms left to os-faults itself")
    print(
        f"{'action':<36} {'nodes':>5} {'call':>8} {'call range':>11} {'trip':>8} {'spawns':>7} "
        f"{'ansible ms':>11} {'own ms':>9}"
    )
    print("\n".join(detail + notes))
    print(
        f"# total {time.monotonic() - began:.0f} s; "
        f"1-min load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()

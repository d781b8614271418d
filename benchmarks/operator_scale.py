"""The operator at scale: N FaultInjections at once against a real lab.

    sudo .venv/bin/python benchmarks/operator_scale.py [--sizes 1,100,1000] [--duration 20,20,120]

Set-up as in tests/e2e: the Kubernetes API emulator (`faultline.lab.kubeapi.KubeAPI`) serves
in this process with the CRDs of `faultline.models.crds`; the operator is a real process
(`faultline run -n default`, KUBECONFIG pointing at the emulator); a 3-node lab is the
FaultTarget `lab` (SSH key and known_hosts in the Secret `lab-ssh`).

Every round creates N FaultInjections as fast as it can: POSTs to the emulator's HTTP API from
`--clients` threads, one keep-alive connection each. Each injection is a real, harmless fault
that may overlap: `fault: {kind: network, action: connect, target: management}` on one node
(`selector: {mode: one}`, `overlap: Allow`): two SSH round trips to apply (read the link state,
`ip link set dev eth1 up` on a link that is up), three to recover.

Phase transitions are observed by a watch subscribed inside the emulator (no polling, no JSON
decoding); each transition is timed at the moment the emulator commits it. Expiry precision is
that commit of `phase: Recovering` minus `status.expiresAt`. Operator memory is VmRSS from
/proc/PID/status, sampled every 0.25 s with the operator's CPU time and the machine's load;
CPU is also accounted to the lab's nodes (their pid namespaces) and to everything else on the
machine, which on a shared host is what moves the figures most. Between rounds every
injection is deleted and the round waits until all are gone.

`--operator-pythonpath DIR` runs the operator from another copy of the package (DIR/faultline),
to compare a patched operator with the same benchmark; `--py-spy FILE` profiles the operator
during the largest round. Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from faultline.lab import Lab
from faultline.lab.kubeapi import KubeAPI
from faultline.lab.kubeapi.selectors import Selector
from faultline.models.crds import crds

BIN = Path(sys.executable).parent
NS = "default"
GROUP, VERSION = "faultline.dev", "v1alpha1"
API = f"{GROUP}/{VERSION}"
COLLECTION = f"/apis/{API}/namespaces/{NS}/faultinjections"
FINAL = ("Completed", "Failed", "Aborted")


# --- processes and memory -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int | str = "self") -> float:
    """VmRSS of a process in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lab_cpu_seconds(lab: Lab) -> float:
    """CPU time of every process inside the lab's nodes (their pid namespaces), reaped
    children included: sshd, the shells it starts, `ip`."""
    wanted = set()
    for node in lab.nodes:
        with contextlib.suppress(OSError):
            wanted.add(os.readlink(f"/proc/{node.init_pid}/ns/pid"))
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") not in wanted:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class Operator:
    """`faultline run` as a child process, as the e2e tests run it."""

    def __init__(self, kubeconfig: Path, log: Path, pythonpath: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.pythonpath = pythonpath
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        port = free_port()
        args = [str(BIN / "faultline"), "run", "-n", NS, "--liveness"]
        args.append(f"http://127.0.0.1:{port}/healthz")
        helptext = subprocess.run(
            [str(BIN / "faultline"), "run", "--help"], capture_output=True, text=True, check=False
        ).stdout
        if "--metrics" in helptext:  # never on 0.0.0.0
            args += ["--metrics", f"127.0.0.1:{free_port()}"]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        if self.pythonpath is not None:  # another `faultline` package, e.g. a patched copy
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(self.pythonpath), env.get("PYTHONPATH")])
            )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log.read_text()[-3000:]}")
            url = f"http://127.0.0.1:{port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"operator not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# --- watching phases ------------------------------------------------------------------------


@dataclass
class Seen:
    created: float | None = None  # monotonic, when the emulator committed the object
    phases: dict[str, float] = field(default_factory=dict)  # first commit of each phase
    phase: str | None = None
    reason_at_recovering: str | None = None
    expires_at: str | None = None
    deleted: float | None = None


class Tracker:
    """Fed by a watch inside the emulator: first time each injection reached each phase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.seen: dict[str, Seen] = {}
        self.counts: dict[str | None, int] = {}  # current phase -> how many
        self.live = 0
        self.modified = 0  # MODIFIED events this round: every write to an injection
        self.active_or_final = 0  # reached Active (or ended before it), this round
        self.final = 0

    def reset(self) -> None:
        with self.lock:
            self.seen = {}
            self.active_or_final = self.final = self.modified = 0

    def on_event(self, type_: str | None, obj: dict[str, Any], at: float) -> None:
        """Called on the emulator's loop for every committed change: keep it cheap."""
        if type_ is None:
            return
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        phase = status.get("phase")
        with self.lock:
            s = self.seen.get(name)
            if s is None:
                s = self.seen[name] = Seen()
            if type_ == "ADDED":
                s.created = at
                self.live += 1
            else:
                self.counts[s.phase] = self.counts.get(s.phase, 0) - 1
                self.modified += type_ == "MODIFIED"
            if type_ == "DELETED":
                s.deleted = at
                self.live -= 1
            else:
                self.counts[phase] = self.counts.get(phase, 0) + 1
                s.phase = phase
                if phase and phase not in s.phases:
                    if not any(p in s.phases for p in ("Active", *FINAL)) and (
                        phase == "Active" or phase in FINAL
                    ):
                        self.active_or_final += 1
                    if phase in FINAL:
                        self.final += 1
                    s.phases[phase] = at
                    if phase == "Recovering":
                        s.reason_at_recovering = status.get("reason")
                if status.get("expiresAt"):
                    s.expires_at = status["expiresAt"]
            self.changed.notify_all()

    def count(self, phase: str | None) -> int:
        with self.lock:
            return self.counts.get(phase, 0)

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until `done()` (called with the lock held) is true."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
        return True


def watch_injections(api: KubeAPI, tracker: Tracker) -> None:
    """Subscribe to FaultInjection changes inside the emulator, on its own loop."""
    store = api.emulator.store
    rd = next(r for r in api.resources() if r.group == GROUP and r.plural == "faultinjections")

    def subscribe() -> Any:
        watcher, _ = store.subscribe(rd, NS, None, Selector(), None)
        return watcher

    watcher = api.call(subscribe)

    async def pump() -> None:
        while True:
            event = await watcher.queue.get()
            if event is None:
                return
            tracker.on_event(watcher.translate(event), event.obj, event.monotonic)

    asyncio.run_coroutine_threadsafe(pump(), api.loop)


# --- the client side ------------------------------------------------------------------------


def injection(name: str, duration: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FaultInjection",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": "lab"},
            "fault": {"kind": "network", "action": "connect", "target": "management"},
            "selector": {"mode": "one"},
            "overlap": "Allow",
            "duration": f"{duration}s",
        },
    }


def create_all(api: KubeAPI, names: list[str], duration: int, clients: int) -> float:
    """POST every injection over HTTP from `clients` threads; returns the seconds it took."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api.token}"}
    errors: list[str] = []

    def worker(part: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
        for name in part:
            conn.request("POST", COLLECTION, json.dumps(injection(name, duration)), headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 201:
                errors.append(f"{name}: {resp.status} {body[:200]!r}")
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(names[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} creations failed, e.g. {errors[0]}")
    return time.monotonic() - start


def delete_all(api: KubeAPI) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    conn.request("DELETE", COLLECTION, headers={"Authorization": f"Bearer {api.token}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status >= 400:
        raise RuntimeError(f"delete collection: {resp.status}")


@dataclass(frozen=True)
class Sample:
    at: float
    op_rss: float
    self_rss: float
    active: int
    op_cpu: float
    busy: float  # machine busy jiffies, all cores
    jiffies: float


class Sampler(threading.Thread):
    """Every 0.25 s: memory and CPU of the operator, the machine's load, how many are Active."""

    def __init__(self, op_pid: int, tracker: Tracker) -> None:
        super().__init__(daemon=True)
        self.op_pid = op_pid
        self.tracker = tracker
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            busy, jiffies = machine_busy()
            self.samples.append(
                Sample(
                    time.monotonic(),
                    rss_mb(self.op_pid),
                    rss_mb(),
                    self.tracker.count("Active"),
                    cpu_seconds(self.op_pid),
                    busy,
                    jiffies,
                )
            )
            self.stopping.wait(0.25)

    def stop(self) -> list[Sample]:
        self.stopping.set()
        self.join()
        return self.samples


def cpu_share(samples: list[Sample], start: float, end: float) -> str:
    """Operator CPU (share of one core) and the machine's load between two moments."""
    inside = [x for x in samples if start <= x.at <= end]
    if len(inside) < 4:
        return "-"
    first, last = inside[0], inside[-1]
    share = (last.op_cpu - first.op_cpu) / (last.at - first.at)
    machine = (last.busy - first.busy) / max(1.0, last.jiffies - first.jiffies)
    return f"{100 * share:.0f}% (machine {100 * machine:.0f}% busy)"


def holding(samples: list[Sample], n: int) -> str:
    """Operator CPU (share of one core) while all N are Active and nothing else happens."""
    plateau = [x for x in samples if x.active == n]
    if n < 2 or len(plateau) < 8:
        return "-"
    first, last = plateau[1], plateau[-2]  # skip the edges, where transitions still run
    seconds = last.at - first.at
    if seconds <= 0:
        return "-"
    share = (last.op_cpu - first.op_cpu) / seconds
    machine = (last.busy - first.busy) / max(1.0, last.jiffies - first.jiffies)
    return f"{100 * share:.0f}% over {seconds:.0f} s (machine {100 * machine:.0f}% busy)"


# --- one round ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def dist(values: list[float]) -> str:
    """median / p95 / p99 / max, in seconds with ms resolution."""
    if not values:
        return "-"
    return (
        f"{statistics.median(values):.3f} / {pct(values, 95):.3f} / {pct(values, 99):.3f}"
        f" / {max(values):.3f}"
    )


def wall(at_monotonic: float, offset: float) -> float:
    return at_monotonic + offset


def run_round(
    lab: Lab,
    api: KubeAPI,
    op: Operator,
    tracker: Tracker,
    n: int,
    duration: int,
    clients: int,
    budget: float,
    dump: Path | None = None,
) -> dict[str, str]:
    tracker.reset()
    names = [f"scale-{n}-{i:05d}" for i in range(n)]
    offset = time.time() - time.monotonic()  # monotonic commit times -> wall clock
    idle_op, idle_self = rss_mb(op.pid), rss_mb()
    cpu_op, cpu_self = cpu_seconds(op.pid), cpu_seconds()
    busy0, total0 = machine_busy()
    cpu_lab = lab_cpu_seconds(lab)
    sampler = Sampler(op.pid, tracker)
    sampler.start()
    started = time.monotonic()
    create_s = create_all(api, names, duration, clients)
    all_active = tracker.wait(
        lambda: tracker.active_or_final >= n, max(1.0, budget - (time.monotonic() - started))
    )
    at_all_active_op = rss_mb(op.pid)
    picked_up = time.monotonic()
    all_final = tracker.wait(
        lambda: tracker.final >= n, max(1.0, budget - (time.monotonic() - started))
    )
    finished = time.monotonic()
    after_op, after_self = rss_mb(op.pid), rss_mb()
    round_cpu_op = cpu_seconds(op.pid) - cpu_op
    round_cpu_self = cpu_seconds() - cpu_self
    busy1, total1 = machine_busy()
    round_cpu_lab = lab_cpu_seconds(lab) - cpu_lab
    machine = (busy1 - busy0) / max(1, total1 - total0)
    ticks = os.sysconf("SC_CLK_TCK")
    others = (busy1 - busy0) / ticks - round_cpu_op - round_cpu_self - round_cpu_lab
    writes = tracker.modified
    samples = sampler.stop()

    with tracker.lock:
        seen = {x: tracker.seen.get(x, Seen()) for x in names}
    created = [s.created for s in seen.values() if s.created is not None]
    to_injecting = [
        s.phases["Injecting"] - s.created
        for s in seen.values()
        if s.created and "Injecting" in s.phases
    ]
    injecting = [s.phases["Injecting"] for s in seen.values() if "Injecting" in s.phases]
    to_active = [
        s.phases["Active"] - s.created for s in seen.values() if s.created and "Active" in s.phases
    ]
    expiry, completed_after, expiries, completions = [], [], [], []
    for s in seen.values():
        if not s.expires_at or "Active" not in s.phases:
            continue
        exp = datetime.fromisoformat(s.expires_at).timestamp()
        expiries.append(exp)
        if "Recovering" in s.phases and s.reason_at_recovering == "Expired":
            expiry.append(wall(s.phases["Recovering"], offset) - exp)
        if "Completed" in s.phases:
            done = wall(s.phases["Completed"], offset)
            completed_after.append(done - exp)
            completions.append(done)
    peak_active = max((x.active for x in samples), default=0)
    at_peak = [x.op_rss for x in samples if x.active == peak_active]
    phases = {p: sum(1 for s in seen.values() if s.phase == p) for p in FINAL}
    if dump is not None:
        with dump.open("a") as out:
            for x, s in seen.items():
                row = {
                    "n": n,
                    "name": x,
                    "created": s.created and wall(s.created, offset),
                    "expiresAt": s.expires_at,
                    "reason_at_recovering": s.reason_at_recovering,
                    **{p: wall(t, offset) for p, t in s.phases.items()},
                }
                out.write(json.dumps(row) + "\n")

    # Clean up: delete every injection, wait until all are gone (finalizers released).
    clean_start = time.monotonic()
    delete_all(api)
    gone = tracker.wait(lambda: tracker.live == 0, 180)
    clean_s = time.monotonic() - clean_start
    time.sleep(1)
    return {
        "spec.duration (s)": str(duration),
        "create N (s, client side)": f"{create_s:.2f} ({n / create_s:.0f}/s)",
        "create -> Injecting (s) p50/p95/p99/max": dist(to_injecting),
        "create -> Active (s) p50/p95/p99/max": dist(to_active),
        "reached Active": f"{len(to_active)}/{n}" + ("" if all_active else " (timed out)"),
        "pick-up rate (Injecting/s)": (
            f"{len(injecting) / (max(injecting) - min(created)):.1f}"
            if n > 1 and injecting
            else "-"
        ),
        "most Active at once": str(peak_active),
        "Recovering - expiresAt (s) p50/p95/p99/max": dist(expiry),
        "Completed - expiresAt (s) p50/p95/p99/max": dist(completed_after),
        "last expiresAt -> all Completed (s)": (
            f"{max(completions) - max(expiries):.2f}"
            if completions and len(completions) == n
            else f"{len(completions)}/{n} completed"
        ),
        "first create -> all final (s)": (
            f"{finished - min(created):.1f}" if all_final and created else "timed out"
        ),
        "final phases": ", ".join(f"{k} {v}" for k, v in phases.items() if v) or "none",
        "operator RSS idle (MiB)": f"{idle_op:.0f}",
        "operator RSS at most Active (MiB)": f"{max(at_peak, default=at_all_active_op):.0f}",
        "operator RSS peak in round (MiB)": f"{max((x.op_rss for x in samples), default=0):.0f}",
        "operator RSS after completion (MiB)": f"{after_op:.0f}",
        "operator RSS after cleanup (MiB)": f"{rss_mb(op.pid):.0f}",
        "operator CPU in round (s)": f"{round_cpu_op:.1f} ({1000 * round_cpu_op / n:.0f} ms each)",
        "operator CPU while picking up (one core = 100%)": cpu_share(samples, started, picked_up),
        "operator CPU holding N Active (one core = 100%)": holding(samples, n),
        "writes to each injection (MODIFIED events)": f"{writes / n:.1f}",
        "machine CPU busy in round (all cores)": f"{100 * machine:.0f}%",
        "CPU s: lab nodes (sshd, sh, ip) / anything else": f"{round_cpu_lab:.1f} / {others:.1f}",
        "bench+emulator RSS before/after (MiB)": f"{idle_self:.0f} / {after_self:.0f}",
        "bench+emulator CPU in round (s)": f"{round_cpu_self:.1f}",
        "delete all -> gone (s)": f"{clean_s:.1f}" + ("" if gone else " (timed out)"),
    }


# --- set-up ---------------------------------------------------------------------------------


def lab_target(lab: Lab) -> list[dict[str, Any]]:
    spec = yaml.safe_load(lab.config_path.read_text())
    ssh = spec["ssh"]
    ssh.pop("privateKeyFile")
    ssh.pop("knownHostsFile")
    ssh["privateKeySecret"] = {"name": "lab-ssh", "key": "id_ed25519"}
    ssh["knownHostsSecret"] = {"name": "lab-ssh", "key": "known_hosts"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lab-ssh", "namespace": NS},
        "type": "Opaque",
        "data": {
            "id_ed25519": base64.b64encode(lab.private_key_path.read_bytes()).decode(),
            "known_hosts": base64.b64encode(lab.known_hosts_path.read_bytes()).decode(),
        },
    }
    target = {
        "apiVersion": API,
        "kind": "FaultTarget",
        "metadata": {"name": "lab", "namespace": NS},
        "spec": spec,
    }
    return [secret, target]


def target_ready(api: KubeAPI) -> bool:
    obj = api.get(API, "FaultTarget", "lab", NS) or {}
    conds = (obj.get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def print_table(sizes: list[int], results: list[dict[str, str]]) -> None:
    print()
    print("| N | " + " | ".join(str(n) for n in sizes) + " |")
    print("| --- |" + " ---: |" * len(sizes))
    for key in results[0]:
        print(f"| {key} | " + " | ".join(r.get(key, "") for r in results) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000", help="N per round, comma-separated")
    parser.add_argument(
        "--duration",
        default="20,20,120",
        help="spec.duration in seconds: one for every size, or one per size, comma-separated "
        "(the largest must outlast the pick-up, so that all N are Active at once)",
    )
    parser.add_argument("--clients", type=int, default=4, help="threads creating injections")
    parser.add_argument(
        "--budget",
        type=float,
        default=240,
        help="seconds a round may take beyond its duration before giving up",
    )
    parser.add_argument("--operator-log", type=Path, help="keep the operator's log here")
    parser.add_argument(
        "--operator-pythonpath",
        type=Path,
        help="run the operator with this directory first on PYTHONPATH (A/B a patched copy)",
    )
    parser.add_argument("--dump", type=Path, help="append per-injection timings (JSON lines)")
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record the operator with py-spy during the largest round (speedscope JSON)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    durations = [int(d) for d in args.duration.split(",")]
    if len(durations) == 1:
        durations *= len(sizes)
    if len(durations) != len(sizes):
        sys.exit("--duration: give one value, or one per size")
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network namespaces): run with sudo")

    tmp = Path(tempfile.mkdtemp(prefix="faultline-opscale-"))
    tmp.chmod(0o755)
    lab = Lab(tmp / "lab", nodes=3, temporary=True, container_tools=())
    op: Operator | None = None
    spy: subprocess.Popen[bytes] | None = None
    results: list[dict[str, str]] = []
    try:
        lab.up()
        with KubeAPI() as api:
            for crd in crds():
                api.apply_crd(crd)
            kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
            for manifest in lab_target(lab):
                api.apply(manifest)
            tracker = Tracker()
            watch_injections(api, tracker)
            op = Operator(
                kubeconfig, args.operator_log or tmp / "operator.log", args.operator_pythonpath
            )
            op.start()
            api.wait_for(API, "FaultTarget", "lab", NS, lambda o: target_ready(api), timeout=60)
            time.sleep(2)  # let start-up settle before the idle figure
            print(f"operator pid {op.pid}; sizes {sizes}; durations {durations} s", flush=True)
            for n, duration in zip(sizes, durations, strict=True):
                if args.py_spy and n == max(sizes):
                    spy = subprocess.Popen(
                        [
                            str(BIN / "py-spy"),
                            "record",
                            "--pid",
                            str(op.pid),
                            "--format",
                            "speedscope",
                            "--output",
                            str(args.py_spy),
                            "--rate",
                            "50",
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                row = run_round(
                    lab,
                    api,
                    op,
                    tracker,
                    n,
                    duration,
                    args.clients,
                    duration + args.budget,
                    args.dump,
                )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                    spy = None
                results.append(row)
                print(f"N={n}: " + "; ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
            print_table(sizes, results)
            op.stop()
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        if op is not None:
            op.stop()
        lab.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

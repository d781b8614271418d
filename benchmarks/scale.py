"""Engine fan-out at scale: 3, 50 and 200 simulated nodes against the floor.

    .venv/bin/python benchmarks/scale.py [--nodes 3,50,200] [--runs 5] [--server-procs 1]

Simulated nodes, not lab nodes: node i is an asyncssh SSH server on 127.0.0.1 with its own
port and its own ed25519 host key (the client checks it against a known_hosts file of
`[127.0.0.1]:PORT` entries, strict, as in production) that accepts the benchmark's client key
and runs each session's command as a real `/bin/sh -c COMMAND` subprocess, with the
session's stdin, stdout and stderr piped through, so the engine's scripts (sent to `sh -s`
on stdin) really run. All servers live in one separate process (`--server-procs` spreads
them over more), so this process's event loop, the one measured, is the engine's alone.
Every simulated node shares this host's kernel: same CPUs, same process table.

Measured with the engine (`Engine(config)`, nodes `sim-0..sim-N-1`, ip 127.0.0.1, each its
own `sshPort`, `maxConcurrency` left at its default unless `--max-concurrency`):

- cold: the first `engine.verify()` of a new Engine: connect to every node and run `true`;
- warm: `engine.verify()` again, over the open connections;
- connect lo: `network connect` of `networks: {loop: lo}` on every node, apply then recover:
  a real action with no effect (the link is up). Apply is two round trips per node (read
  the link state, `ip link set dev lo up`), recovery three (set the link, kill the
  processes carrying the injection's marker, read the state back).

The floor is the same commands with bare asyncssh: connections opened in parallel with the
client key and known_hosts loaded once (cold), then the same scripts over those open
connections, in parallel over the nodes and in sequence on each node, as the engine does.
After one untimed round of each, engine and floor alternate which goes first. Prints medians
in ms, the ratios, this process's CPU and RSS, and the CPU of the server processes and of the
shells they ran. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

T = TypeVar("T")

PHASES = ("cold", "warm", "apply", "recover", "action")
LABELS = {
    "cold": "cold: connect + verify",
    "warm": "warm verify",
    "apply": "connect lo: apply",
    "recover": "connect lo: recover",
    "action": "connect lo: apply+recover",
}


# --- the simulated nodes (server process) ---------------------------------------------------


async def _session(process: asyncssh.SSHServerProcess[bytes], env: dict[str, str]) -> None:
    """Run the session's command with a real shell, stdin/stdout/stderr piped through."""
    command = process.command
    if command is None:  # an interactive shell request: not something the engine sends
        process.exit(1)
        return
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd="/",
    )
    stdin = proc.stdin
    assert stdin is not None and proc.stdout is not None and proc.stderr is not None

    async def feed() -> None:
        try:
            while data := await process.stdin.read(65536):
                stdin.write(data)
                await stdin.drain()
        except (OSError, asyncssh.Error):
            pass
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while data := await source.read(65536):
            with contextlib.suppress(OSError, asyncssh.Error):
                sink.write(data)

    feeder = asyncio.create_task(feed())
    await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
    status = await proc.wait()
    feeder.cancel()
    with contextlib.suppress(OSError, asyncssh.Error):
        process.exit(status if status >= 0 else 128 - status)


async def _serve(first: int, count: int, authorized_keys: str) -> None:
    loop = asyncio.get_running_loop()
    with warnings.catch_warnings():
        # One pidfd per child instead of a waitpid thread per child (Python 3.11's default).
        warnings.simplefilter("ignore", DeprecationWarning)
        if hasattr(asyncio, "PidfdChildWatcher"):
            with contextlib.suppress(OSError, NotImplementedError):
                watcher = asyncio.PidfdChildWatcher()
                watcher.attach_loop(loop)
                asyncio.set_child_watcher(watcher)
    clients = asyncssh.read_authorized_keys(authorized_keys)
    nodes = []
    servers = []
    for i in range(first, first + count):
        key = asyncssh.generate_private_key("ssh-ed25519")
        env = {**os.environ, "SIM_NODE": f"sim-{i}"}

        def factory(
            process: asyncssh.SSHServerProcess[bytes], env: dict[str, str] = env
        ) -> Awaitable[None]:
            return _session(process, env)

        server = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[key],
            authorized_client_keys=clients,
            process_factory=factory,
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            sftp_factory=None,
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        nodes.append({"index": i, "port": port, "key": key.export_public_key().decode().strip()})
    print(json.dumps(nodes), flush=True)
    # Serve until the benchmark closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    for server in servers:
        server.close()


class SimServers:
    """The server processes; writes known_hosts from the host keys they report."""

    def __init__(self, tmp: Path, count: int, procs: int) -> None:
        self.tmp = tmp
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nodes: list[dict[str, Any]] = []
        split = [count // procs + (1 if k < count % procs else 0) for k in range(procs)]
        first = 0
        for size in split:
            if size == 0:
                continue
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--serve",
                        f"{first},{size}",
                        "--authorized-keys",
                        str(tmp / "client_key.pub"),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
            first += size
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError("a server process died before listening")
            self.nodes.extend(json.loads(line))
        self.nodes.sort(key=lambda n: n["index"])
        self.known_hosts = tmp / f"known_hosts-{count}"
        self.known_hosts.write_text(
            "".join(f"[127.0.0.1]:{n['port']} {n['key']}\n" for n in self.nodes)
        )

    def cpu_seconds(self) -> float:
        """CPU time of the server processes themselves (not their shells)."""
        return sum(_cpu(p.pid)[0] for p in self.procs)

    def shells_cpu_seconds(self) -> float:
        """CPU time of the reaped shells and commands the servers ran."""
        return sum(_cpu(p.pid)[1] for p in self.procs)

    def rss_mb(self) -> float:
        return sum(_status_mb(p.pid, "VmRSS") for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cpu(pid: int | str) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _status_mb(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the benchmark (client) -----------------------------------------------------------------


class Sample:
    """Wall time of one step, and the CPU this process and the servers spent in it."""

    def __init__(self, servers: SimServers) -> None:
        self.servers = servers
        self.wall: dict[str, list[float]] = {}
        self.client_cpu: dict[str, list[float]] = {}
        self.server_cpu: dict[str, list[float]] = {}
        self.shells_cpu: dict[str, list[float]] = {}

    async def timed(self, name: str, step: Callable[[], Awaitable[T]]) -> T:
        cpu0 = time.process_time()
        srv0, sh0 = self.servers.cpu_seconds(), self.servers.shells_cpu_seconds()
        start = time.perf_counter()
        result = await step()
        wall = (time.perf_counter() - start) * 1000
        self.add(name, wall, (time.process_time() - cpu0) * 1000, srv0, sh0)
        return result

    def add(self, name: str, wall: float, client: float, srv0: float, sh0: float) -> None:
        self.wall.setdefault(name, []).append(wall)
        self.client_cpu.setdefault(name, []).append(client)
        self.server_cpu.setdefault(name, []).append((self.servers.cpu_seconds() - srv0) * 1000)
        self.shells_cpu.setdefault(name, []).append(
            (self.servers.shells_cpu_seconds() - sh0) * 1000
        )

    def total(self, name: str, parts: tuple[str, ...]) -> None:
        """A row that is the per-run sum of other rows."""
        for table in (self.wall, self.client_cpu, self.server_cpu, self.shells_cpu):
            table[name] = [sum(vals) for vals in zip(*(table[p] for p in parts), strict=True)]


def make_config(servers: SimServers, tmp: Path, max_concurrency: int | None) -> Any:
    from faultline.models.config import parse_config

    ssh: dict[str, Any] = {
        "user": "root",
        "privateKeyFile": str(tmp / "client_key"),
        "knownHostsFile": str(servers.known_hosts),
    }
    if max_concurrency:
        ssh["maxConcurrency"] = max_concurrency
    nodes = [
        {"fqdn": f"sim-{n['index']}", "ip": "127.0.0.1", "sshPort": n["port"]}
        for n in servers.nodes
    ]
    return parse_config(
        {"discovery": {"static": {"nodes": nodes}}, "ssh": ssh, "networks": {"loop": "lo"}}
    )


async def engine_run(config: Any, sample: Sample) -> None:
    from faultline.engine.engine import Engine
    from faultline.models.faults import FaultKind, FaultSpec

    engine = Engine(config)  # builds the node list and handlers; connects nothing

    async def cold() -> None:
        checks = await engine.verify()
        bad = [c for c in checks if not c.reachable]
        if bad:
            raise RuntimeError(f"{len(bad)} nodes unreachable, e.g. {bad[0].fqdn}: {bad[0].error}")

    try:
        await sample.timed("cold", cold)
        await sample.timed("warm", engine.verify)
        spec = FaultSpec(kind=FaultKind.NETWORK, action="connect", target="loop")
        result = await sample.timed("apply", lambda: engine.inject(spec, engine.nodes))
        failed = [n for n in result.nodes if not n.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} applies failed, e.g. {failed[0].error}")
        back = await sample.timed("recover", lambda: engine.recover_all(result.records))
        failed = [n for n in back.nodes if not n.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} recoveries failed, e.g. {failed[0].error}")
    finally:
        await engine.close()


async def floor_run(servers: SimServers, tmp: Path, sample: Sample, run: int) -> None:
    from faultline.drivers import network
    from faultline.drivers.shell import kill_by_marker

    known_hosts = asyncssh.read_known_hosts(str(servers.known_hosts))
    client_key = asyncssh.read_private_key(str(tmp / "client_key"))
    conns: list[asyncssh.SSHClientConnection] = []

    async def run_checked(
        conn: asyncssh.SSHClientConnection, command: str, script: str | None
    ) -> asyncssh.SSHCompletedProcess:
        done = await conn.run(command, check=False, input=script)
        if done.exit_status != 0:
            raise RuntimeError(f"floor: {command} {script!r}: exit {done.exit_status}")
        return done

    async def cold() -> None:
        async def one(port: int) -> asyncssh.SSHClientConnection:
            conn = await asyncssh.connect(
                "127.0.0.1",
                port=port,
                username="root",
                known_hosts=known_hosts,
                client_keys=[client_key],
                agent_path=None,
                keepalive_interval=15,
                connect_timeout=10,
            )
            await run_checked(conn, "true", None)
            return conn

        conns.extend(await asyncio.gather(*(one(n["port"]) for n in servers.nodes)))

    async def fan_out(scripts: Callable[[int], list[str]]) -> None:
        async def node(i: int, conn: asyncssh.SSHClientConnection) -> None:
            for script in scripts(i):
                await run_checked(conn, "sh -s", script)

        await asyncio.gather(*(node(i, c) for i, c in enumerate(conns)))

    lo = "lo"
    try:
        await sample.timed("cold", cold)
        await sample.timed(
            "warm", lambda: asyncio.gather(*(run_checked(c, "true", None) for c in conns))
        )
        await sample.timed(
            "apply", lambda: fan_out(lambda i: [network.link_state(lo), network.link_set(lo, "up")])
        )
        await sample.timed(
            "recover",
            lambda: fan_out(
                lambda i: [
                    network.link_set(lo, "up"),
                    kill_by_marker(f"faultline-floor{run}-{i}"),
                    network.link_state(lo),
                ]
            ),
        )
    finally:
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2)


async def measure(
    servers: SimServers, tmp: Path, runs: int, max_concurrency: int | None
) -> tuple[Sample, Sample]:
    config = make_config(servers, tmp, max_concurrency)
    # One untimed round first: imports, caches and the servers' first connections.
    await engine_run(config, Sample(servers))
    await floor_run(servers, tmp, Sample(servers), -1)
    ours, floor = Sample(servers), Sample(servers)
    for run in range(runs):
        order = (0, 1) if run % 2 == 0 else (1, 0)
        for side in order:
            if side == 0:
                await engine_run(config, ours)
            else:
                await floor_run(servers, tmp, floor, run)
            await asyncio.sleep(0.2)  # let the servers finish closing the connections
    for sample in (ours, floor):
        sample.total("action", ("apply", "recover"))
    return ours, floor


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,50,200", help="node counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--server-procs", type=int, default=1, help="server processes the nodes are spread over"
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=None, help="ssh.maxConcurrency (default: unset)"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--authorized-keys", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        first, count = (int(x) for x in args.serve.split(","))
        asyncio.run(_serve(first, count, args.authorized_keys))
        return

    counts = [int(n) for n in args.nodes.split(",")]
    started = time.monotonic()
    print(
        f"simulated nodes: asyncssh servers on 127.0.0.1 in {args.server_procs} separate "
        f"process(es), one port and host key per node, commands run by a real /bin/sh; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    results: dict[int, tuple[Sample, Sample, float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="faultline-scale-") as name:
        tmp = Path(name)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(tmp / "client_key"))
        key.write_public_key(str(tmp / "client_key.pub"))
        (tmp / "client_key").chmod(0o600)
        for count in counts:
            servers = SimServers(tmp, count, args.server_procs)
            try:
                rss0 = _status_mb("self", "VmRSS")
                ours, floor = asyncio.run(measure(servers, tmp, args.runs, args.max_concurrency))
                results[count] = (ours, floor, rss0, _status_mb("self", "VmRSS"), servers.rss_mb())
            finally:
                servers.stop()

    print(
        f"\nmedians of {args.runs} runs, ms (CPU columns: Faultline's runs; client = this "
        "process, servers = the server processes, shells = the commands they ran)"
    )
    header = (
        f"{'step':<26} {'nodes':>5} {'faultline':>10} {'floor':>8} {'ratio':>6} "
        f"{'client CPU':>10} {'floor CPU':>9} {'servers CPU':>11} {'shells CPU':>10}"
    )
    print(header)
    for count, (ours, floor, _, _, _) in results.items():
        for phase in PHASES:
            a, b = median(ours.wall[phase]), median(floor.wall[phase])
            print(
                f"{LABELS[phase]:<26} {count:>5} {a:>10.1f} {b:>8.1f} {a / b:>6.2f} "
                f"{median(ours.client_cpu[phase]):>10.1f} "
                f"{median(floor.client_cpu[phase]):>9.1f} "
                f"{median(ours.server_cpu[phase]):>11.1f} "
                f"{median(ours.shells_cpu[phase]):>10.1f}"
            )
    if len(counts) > 1:
        lo, hi = min(counts), max(counts)
        print(f"\nscaling t({hi})/t({lo})")
        print(f"{'step':<26} {'faultline':>10} {'floor':>8}")
        for phase in PHASES:
            a = median(results[hi][0].wall[phase]) / median(results[lo][0].wall[phase])
            b = median(results[hi][1].wall[phase]) / median(results[lo][1].wall[phase])
            print(f"{LABELS[phase]:<26} {a:>10.2f} {b:>8.2f}")
    print("\nmemory, MiB (client RSS before / after the node count's runs; servers' RSS)")
    for count, (_, _, rss0, rss1, srv) in results.items():
        print(f"{count:>5} nodes: client {rss0:.0f} -> {rss1:.0f}, servers {srv:.0f}")
    print(
        f"\nclient peak RSS {_status_mb('self', 'VmHWM'):.0f} MiB; load average "
        f"{os.getloadavg()[0]:.2f} at end; total {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()

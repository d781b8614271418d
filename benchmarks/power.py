"""Power actions on real lab nodes: IPMI power off / on one node at a time against Faultline's
parallel fan-out, and a Ganeti instance's shutdown -> startup round trip through RAPI.

    .venv/bin/python benchmarks/power.py [--runs 3] [--nodes 3] [--instance inst1.ganeti.test]

Builds a lab of its own (`ipmi` and `ganeti` add-ons) in a temporary directory and tears it
down at the end, also on failure or SIGTERM. Needs root, as every lab does.

IPMI (each node's BMC is an OpenIPMI `ipmi_sim` on 127.0.0.1 whose chassis control powers the
lab node), through the public API (`faultline.connect(config_filename=...)`):

- sequential: `cloud.get_nodes([fqdn]).poweroff()` for one node after the other, then
  `.poweron()` the same way: the same engine path as the fan-out, one node per call;
- parallel: `cloud.get_nodes().poweroff()`, then `cloud.get_nodes().poweron()`.

An engine poweroff of a node is: read the power state from the BMC, read the node's boot id
over a new SSH connection (the record's previous state), chassis power down, poll Get
Chassis Status every 0.1 s until it says off, read the state once more. An engine poweron is:
read the state, chassis power up, poll until the BMC says on, then reconnect over SSH every
0.3 s until the node answers with a boot id (Faultline's "node answers"). Every IPMI
operation logs in to the BMC and out again.

For where that time goes, the same power down / up through the ipmi backend alone
(`IpmiPower.power_off` / `power_on`, sequential and in parallel with asyncio.gather): those
stop when Get Chassis Status shows the new state, without SSH; untimed, the benchmark then
waits for every node to answer SSH before going on.

Ganeti: `RapiClient` (the driver's client) on the lab's `ganeti:` section;
`instance_shutdown(name, timeout=0)` (what the ganeti power backend's poweroff sends: no
wait for a clean stop) then `instance_startup(name)`, each job polled to completion (the
client polls after 50 ms, doubling up to 1 s). Ganeti's own time for each job
(`received_ts` -> `end_ts`, read from the job afterwards) is printed next to it.

One untimed round of everything first; then `--runs` rounds, with sequential and parallel
taking turns at going first. Prints medians in seconds (Ganeti: median, min, max). Nothing
here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faultline
from faultline.api import load_config_file
from faultline.drivers.ganeti import RapiClient
from faultline.drivers.power import PowerBackend, PowerTarget, build_backend
from faultline.lab import Lab

INSTANCE = "inst1.ganeti.test"


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def fmt(seconds: float) -> str:
    return f"{seconds:.2f}"


# --- IPMI -----------------------------------------------------------------------------------


def _targets(cloud: Any) -> list[PowerTarget]:
    return [PowerTarget(n.fqdn, n.ip, n.mac, n.bmc, dict(n.labels)) for n in cloud.engine.nodes]


async def _backend_all(
    backend: PowerBackend,
    targets: list[PowerTarget],
    verb: str,
    parallel: bool,
) -> None:
    act: Callable[[PowerTarget], Awaitable[str]] = getattr(backend, verb)
    if parallel:
        await asyncio.gather(*(act(t) for t in targets))
    else:
        for t in targets:
            await act(t)


def ipmi_rounds(lab: Lab, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """{row: (sequential seconds, parallel seconds)} over `runs` rounds."""
    rows: dict[str, tuple[list[float], list[float]]] = {
        "poweroff": ([], []),
        "poweron until SSH answers": ([], []),
        "poweroff + poweron": ([], []),
        "BMC only: power off": ([], []),
        "BMC only: power on (chassis on)": ([], []),
    }
    with faultline.connect(config_filename=lab.config_path) as cloud:
        cloud.verify()
        fqdns = cloud.get_nodes().get_fqdns()
        targets = _targets(cloud)
        (power,) = cloud.config.power
        backend = build_backend(power)

        def engine(verb: str, parallel: bool) -> None:
            if parallel:
                getattr(cloud.get_nodes(), verb)()
            else:
                for fqdn in fqdns:
                    getattr(cloud.get_nodes([fqdn]), verb)()

        def bmc(verb: str, parallel: bool) -> None:
            asyncio.run(_backend_all(backend, targets, verb, parallel))

        def one_side(side: int, record: bool) -> None:
            parallel = side == 1
            off = timed(lambda: engine("poweroff", parallel))
            on = timed(lambda: engine("poweron", parallel))
            bmc_off = timed(lambda: bmc("power_off", parallel))
            bmc_on = timed(lambda: bmc("power_on", parallel))
            lab.wait_ready(timeout=60)  # untimed: every node answers SSH again
            cloud.verify()
            if record:
                rows["poweroff"][side].append(off)
                rows["poweron until SSH answers"][side].append(on)
                rows["poweroff + poweron"][side].append(off + on)
                rows["BMC only: power off"][side].append(bmc_off)
                rows["BMC only: power on (chassis on)"][side].append(bmc_on)

        for side in (0, 1):  # warm-up: imports, first logins, first connections
            one_side(side, record=False)
        for i in range(runs):
            for side in (0, 1) if i % 2 == 0 else (1, 0):
                one_side(side, record=True)
    return rows


# --- Ganeti ---------------------------------------------------------------------------------


def _job_seconds(info: dict[str, Any]) -> float | None:
    """Ganeti's own time for a job: received_ts -> end_ts ([seconds, microseconds])."""
    start, end = info.get("received_ts"), info.get("end_ts")
    if not (isinstance(start, list) and isinstance(end, list)):
        return None
    return (end[0] - start[0]) + (end[1] - start[1]) / 1e6


async def ganeti_rounds(lab: Lab, instance: str, runs: int) -> dict[str, list[float]]:
    config = load_config_file(lab.config_path)
    if config.ganeti is None:
        raise RuntimeError(f"{lab.config_path} has no ganeti section")
    rapi = RapiClient(config.ganeti)
    rows: dict[str, list[float]] = {
        "shutdown --timeout 0": [],
        "shutdown job (Ganeti)": [],
        "startup": [],
        "startup job (Ganeti)": [],
        "shutdown -> startup": [],
    }
    inst = await rapi.instance(instance)
    if inst.get("oper_state") is not True:
        await rapi.instance_startup(instance)
    for i in range(runs + 1):  # the first round is a warm-up
        start = time.perf_counter()
        down = await rapi.instance_shutdown(instance, timeout=0)
        mid = time.perf_counter()
        up = await rapi.instance_startup(instance)
        end = time.perf_counter()
        if i == 0:
            continue
        rows["shutdown --timeout 0"].append(mid - start)
        rows["startup"].append(end - mid)
        rows["shutdown -> startup"].append(end - start)
        for job, row in ((down, "shutdown job (Ganeti)"), (up, "startup job (Ganeti)")):
            took = _job_seconds(await rapi.job(job.job_id))
            if took is not None:
                rows[row].append(took)
    state = (await rapi.instance(instance)).get("oper_state")
    if state is not True:
        raise RuntimeError(f"{instance} is not running after the benchmark (oper_state {state})")
    await rapi.close()
    return rows


# --- main -----------------------------------------------------------------------------------


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the `finally` that tears the lab down


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed rounds of each (default 3)")
    parser.add_argument("--nodes", type=int, default=3, help="lab nodes (default 3)")
    parser.add_argument("--instance", default=INSTANCE, help=f"Ganeti instance ({INSTANCE})")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    print(f"load average at start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="faultline-bench-power-") as tmp:
        Path(tmp).chmod(0o755)  # Ganeti's daemons run as other users and look inside
        lab = Lab(
            state_dir=Path(tmp) / "lab",
            nodes=args.nodes,
            temporary=True,
            container_tools=(),
            addons=("ipmi", "ganeti"),
        )
        try:
            started = time.monotonic()
            lab.up()
            print(f"lab up ({args.nodes} nodes, ipmi + ganeti): {time.monotonic() - started:.0f} s")
            power = ipmi_rounds(lab, args.runs)
            ganeti = asyncio.run(ganeti_rounds(lab, args.instance, args.runs))
        finally:
            lab.down()
    print()
    print(f"IPMI, {args.nodes} nodes, medians of {args.runs} runs (s)")
    print(f"{'step':<34} {'sequential':>10} {'parallel':>9} {'seq/par':>8}")
    for name, (seq, par) in power.items():
        s, p = statistics.median(seq), statistics.median(par)
        print(f"{name:<34} {fmt(s):>10} {fmt(p):>9} {s / p:>8.2f}")
    print()
    print(f"Ganeti RAPI, instance {args.instance}, {args.runs} runs (s)")
    print(f"{'step':<34} {'median':>10} {'min':>9} {'max':>8}")
    for name, values in ganeti.items():
        if values:
            low, mid, high = min(values), statistics.median(values), max(values)
            print(f"{name:<34} {fmt(mid):>10} {fmt(low):>9} {fmt(high):>8}")
    print()
    print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()

"""Engine actions against the physical floor, on real lab nodes.

The floor is the same command sent over SSH connections that are already open to the same
nodes (asyncssh, one connection per node, fan-out in parallel). Faultline's figure is the
full engine path: plan, records, previous state, action, verification of the effect.

    sudo .venv/bin/python benchmarks/engine_vs_floor.py [--nodes 3,10] [--runs 7]

Prints medians in milliseconds and the ratio Faultline / floor. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from faultline.api import load_config_file
from faultline.drivers.ssh import SshPool
from faultline.engine.engine import Engine
from faultline.engine.shell import ssh_target
from faultline.lab import Lab
from faultline.models.faults import FaultKind, FaultSpec


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await step()
    return (time.perf_counter() - start) * 1000


async def fan_out(pool: SshPool, engine: Engine, command: str, nodes: list[object]) -> None:
    targets = [ssh_target(n, engine.config) for n in nodes]  # type: ignore[arg-type]
    results = await asyncio.gather(*(pool.run(t, command) for t in targets))
    bad = [r for r in results if not r.ok]
    if bad:
        raise RuntimeError(f"floor command failed: {bad[0].describe()}")


async def measure(lab: Lab, runs: int) -> list[tuple[str, float, float]]:
    config = load_config_file(lab.config_path)
    engine = Engine(config)
    floor = SshPool(config.ssh)
    nodes = engine.nodes
    one = nodes[:1]
    await engine.verify()
    await fan_out(floor, engine, "true", nodes)  # both sides start with open connections
    restart = FaultSpec(kind=FaultKind.SERVICE, action="restart", target="memcached")
    kill = FaultSpec(kind=FaultKind.SERVICE, action="kill", target="memcached")
    restore = "service memcached start >/dev/null"
    rows: dict[str, tuple[list[float], list[float]]] = {
        "verify (true on every node)": ([], []),
        "restart memcached on all nodes": ([], []),
        "kill memcached on one node": ([], []),
    }
    for i in range(runs):
        # Alternate which side goes first so warm caches favour neither.
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            if side == 0:
                rows["verify (true on every node)"][0].append(await timed(engine.verify))
                rows["restart memcached on all nodes"][0].append(
                    await timed(lambda: engine.inject(restart, nodes))
                )
                rows["kill memcached on one node"][0].append(
                    await timed(lambda: engine.inject(kill, one))
                )
            else:
                rows["verify (true on every node)"][1].append(
                    await timed(lambda: fan_out(floor, engine, "true", nodes))
                )
                rows["restart memcached on all nodes"][1].append(
                    await timed(lambda: fan_out(floor, engine, "service memcached restart", nodes))
                )
                rows["kill memcached on one node"][1].append(
                    await timed(lambda: fan_out(floor, engine, "pkill -KILL -x memcached", one))
                )
            await fan_out(floor, engine, restore, one)
    await engine.close()
    await floor.close()
    return [(name, statistics.median(a), statistics.median(b)) for name, (a, b) in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,10", help="lab sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"{'action':<34} {'nodes':>5} {'faultline ms':>13} {'floor ms':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory(prefix="faultline-bench-") as tmp:
        Path(tmp).chmod(0o755)
        for count in (int(n) for n in args.nodes.split(",")):
            lab = Lab(Path(tmp) / f"lab{count}", nodes=count, container_tools=())
            started = time.monotonic()
            lab.up()
            up = time.monotonic() - started
            try:
                for name, ours, bare in asyncio.run(measure(lab, args.runs)):
                    print(f"{name:<34} {count:>5} {ours:>13.1f} {bare:>9.1f} {ours / bare:>6.2f}")
            finally:
                lab.down()
            print(f"{'(lab up)':<34} {count:>5} {up * 1000:>13.0f}")


if __name__ == "__main__":
    main()

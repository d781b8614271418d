"""Where parallel IPMI calls lose time: pyghmi's lost wake-ups, measured on the lab's BMCs.

    .venv/bin/python benchmarks/ipmi_stall.py [--batches 15] [--nodes 3] [--trace]

Builds a lab of its own (`ipmi` add-on: one OpenIPMI `ipmi_sim` per node on 127.0.0.1) in a
temporary directory and tears it down at the end. A batch is one "log in, Get Chassis
Status, log out" per node, through the ipmi backend's session class (the code every power
verb runs), done three ways:

- parallel: one thread per BMC at once, as the power fan-out does;
- locked: the same threads, with every pyghmi request behind one process-wide lock;
- sequential: one BMC after the other.

Prints, per way, the median and the worst of each batch's slowest BMC and how many
batches had a BMC slower than 0.5 s (a pyghmi retransmit waits 0.5-1.0 s). `--trace`
wraps pyghmi's socket send/receive and prints every packet of the first slow parallel
batch: the BMC's answer arrives within milliseconds and the next request leaves only
when the retransmit timer fires. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import yaml
from pyghmi.ipmi.private import session as pyghmi_session  # type: ignore[import-untyped]

from faultline.drivers import power_ipmi
from faultline.lab import Lab

SLOW = 0.5


class PacketTrace:
    """Every UDP packet pyghmi sends or receives, with the time and the BMC port."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, str, int, int]] = []
        self._send = pyghmi_session._io_sendto
        self._recv = pyghmi_session._io_recvfrom
        pyghmi_session._io_sendto = self.send
        pyghmi_session._io_recvfrom = self.recv

    def send(self, sock: Any, packet: bytes, address: tuple[str, int]) -> None:
        self.packets.append((time.monotonic(), "sent", address[1], len(packet)))
        self._send(sock, packet, address)

    def recv(self, sock: Any, size: int) -> Any:
        got = self._recv(sock, size)
        if got is not None and len(got[0]) >= 4:  # shorter: pyghmi waking its own select
            self.packets.append((time.monotonic(), "received", got[1][1], len(got[0])))
        return got


def bmcs_of(lab: Lab) -> list[power_ipmi.Bmc]:
    spec = yaml.safe_load(lab.config_path.read_text())
    out = []
    for node in spec["discovery"]["static"]["nodes"]:
        bmc = node["bmc"]
        out.append(
            power_ipmi.Bmc(
                node["fqdn"],
                bmc["address"],
                bmc.get("port", power_ipmi.IPMI_PORT),
                bmc["username"],
                bmc["passwordFile"],
            )
        )
    return out


def status_once(bmc: power_ipmi.Bmc, lock: threading.Lock | None) -> float:
    guard = lock if lock is not None else nullcontext()
    start = time.monotonic()
    session = power_ipmi._Session(bmc, retries=2)
    try:
        with guard:
            session._login()
        with guard:
            session.state()
    finally:
        with guard:
            session.close()
    return time.monotonic() - start


def batch(bmcs: list[power_ipmi.Bmc], way: str, lock: threading.Lock) -> float:
    """The slowest BMC's time in one batch."""
    if way == "sequential":
        return max(status_once(b, None) for b in bmcs)
    with ThreadPoolExecutor(len(bmcs)) as pool:
        guard = lock if way == "locked" else None
        return max(pool.map(lambda b: status_once(b, guard), bmcs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=15, help="batches per way (default 15)")
    parser.add_argument("--nodes", type=int, default=3, help="lab nodes (default 3)")
    parser.add_argument("--trace", action="store_true", help="print a slow batch's packets")
    args = parser.parse_args()
    trace = PacketTrace() if args.trace else None
    lock = threading.Lock()
    slowest: dict[str, list[float]] = {"parallel": [], "locked": [], "sequential": []}
    with tempfile.TemporaryDirectory(prefix="faultline-bench-ipmi-") as tmp:
        lab = Lab(
            state_dir=Path(tmp) / "lab",
            nodes=args.nodes,
            temporary=True,
            container_tools=(),
            addons=("ipmi",),
        )
        try:
            lab.up()
            bmcs = bmcs_of(lab)
            for b in bmcs:  # untimed: the first login of a process sets pyghmi up
                status_once(b, None)
            for _ in range(args.batches):
                for way, times in slowest.items():  # the ways take turns
                    if trace is not None:
                        trace.packets.clear()
                    started = time.monotonic()
                    took = batch(bmcs, way, lock)
                    times.append(took)
                    if trace is not None and way == "parallel" and took > SLOW:
                        print(f"packets of a parallel batch that took {took:.3f} s:")
                        for at, what, port, size in trace.packets:
                            print(f"  {at - started:7.3f} s  {what:<8} BMC port {port}  {size} B")
                        trace = None
        finally:
            lab.down()
    print(f"\n{args.nodes} BMCs, {args.batches} batches per way; the slowest BMC of each batch (s)")
    print(f"{'way':<12} {'median':>7} {'worst':>7} {'batches > 0.5 s':>16}")
    for way, times in slowest.items():
        stalled = sum(t > SLOW for t in times)
        print(
            f"{way:<12} {statistics.median(times):>7.3f} {max(times):>7.3f} "
            f"{stalled:>10} of {len(times)}"
        )


if __name__ == "__main__":
    main()

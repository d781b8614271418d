"""The `process` service driver on real nodes: a bare process found by its command line,
started by the target's startCommand; kill, terminate, recover and unplug act on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import faultline
from faultline.lab import Lab
from lab_observe import NODES, eventually, out, port_open

pytestmark = pytest.mark.lab

PORT = 7000
COMMAND = f"nc -lk -p {PORT}"
# Bracketed, so the shell running pgrep does not match its own command line.
FIND = f"pgrep -f '[n]c -lk -p {PORT}' || true"


def ticker_pids(lab: Lab, node: str) -> list[str]:
    return out(lab, node, FIND).split()


def placement(lab: Lab) -> dict[str, bool]:
    return {n: bool(ticker_pids(lab, n)) for n in NODES}


def stop_tickers(lab: Lab) -> None:
    for node in NODES:
        lab.exec(node, f"for p in $({FIND}); do kill -KILL $p; done")


@pytest.fixture
def ticker_lab(healthy_lab: Lab) -> Iterator[Lab]:
    """The healthy lab, without any ticker before or after the test."""
    stop_tickers(healthy_lab)
    try:
        yield healthy_lab
    finally:
        stop_tickers(healthy_lab)


@pytest.fixture
def cloud_with_ticker(ticker_lab: Lab) -> Iterator[Any]:
    data = yaml.safe_load(ticker_lab.config_path.read_text())
    data["services"]["ticker"] = {
        "driver": "process",
        "grep": COMMAND,
        "startCommand": COMMAND,
        "port": {"protocol": "tcp", "number": PORT},
    }
    with faultline.connect(data) as cloud:
        yield cloud
        leftovers = [r for r in cloud.records() if r.needs_recovery and r.action == "unplug"]
        if leftovers:
            cloud.recover(leftovers, raise_on_error=False)


def start_by_hand(lab: Lab, node: str) -> list[str]:
    """Start the ticker on a node without the engine; returns its pids."""
    lab.exec(node, f"setsid -f {COMMAND} </dev/null >/dev/null 2>&1", check=True)
    eventually(lambda: bool(ticker_pids(lab, node)), what=f"ticker on {node}")
    return ticker_pids(lab, node)


def test_kill_and_terminate_find_it_by_pattern(ticker_lab: Lab, cloud_with_ticker: Any) -> None:
    lab, cloud = ticker_lab, cloud_with_ticker
    ticker = cloud.get_service("ticker")
    node2 = cloud.get_nodes(["node2"])
    first = start_by_hand(lab, "node2")
    assert placement(lab) == {"node1": False, "node2": True, "node3": False}
    assert sorted(n.fqdn for n in ticker.discover_nodes()) == ["node2"]

    killed = ticker.kill(nodes=node2)
    assert killed.ok and killed.nodes[0].output == f"killed pids {' '.join(first)}"
    assert placement(lab) == {"node1": False, "node2": False, "node3": False}

    again = start_by_hand(lab, "node2")
    # Without terminateCommand, terminate sends SIGTERM to whatever matches the pattern.
    terminated = ticker.terminate(nodes=node2)
    assert terminated.ok
    assert terminated.nodes[0].output == f"terminated pids {' '.join(again)}"
    assert placement(lab) == {"node1": False, "node2": False, "node3": False}


def test_start_and_recover_run_the_start_command(ticker_lab: Lab, cloud_with_ticker: Any) -> None:
    lab, cloud = ticker_lab, cloud_with_ticker
    ticker = cloud.get_service("ticker")
    node2 = cloud.get_nodes(["node2"])
    assert placement(lab) == {"node1": False, "node2": False, "node3": False}

    started = ticker.start(nodes=node2)
    assert started.ok and started.nodes[0].output == "started"
    assert placement(lab) == {"node1": False, "node2": True, "node3": False}
    assert out(lab, "node2", f"ps -o args= -p {ticker_pids(lab, 'node2')[-1]}") == COMMAND

    first = ticker_pids(lab, "node2")
    killed = ticker.kill(nodes=node2)
    assert killed.ok and killed.nodes[0].output == f"killed pids {' '.join(first)}"
    assert placement(lab) == {"node1": False, "node2": False, "node3": False}

    recovered = cloud.recover(killed)
    assert recovered.ok and recovered.nodes[0].output == "running"
    assert placement(lab) == {"node1": False, "node2": True, "node3": False}
    again = ticker_pids(lab, "node2")
    assert set(again).isdisjoint(first)

    terminated = ticker.terminate(nodes=node2)
    assert terminated.ok
    assert terminated.nodes[0].output == f"terminated pids {' '.join(again)}"
    assert placement(lab) == {"node1": False, "node2": False, "node3": False}


def test_unplug_blocks_the_port_until_recovered(ticker_lab: Lab, cloud_with_ticker: Any) -> None:
    lab, cloud = ticker_lab, cloud_with_ticker
    ticker = cloud.get_service("ticker")
    node2 = cloud.get_nodes(["node2"])
    node2_mgmt = lab.node("node2").mgmt_ip
    start_by_hand(lab, "node2")
    eventually(lambda: port_open(lab, "node1", node2_mgmt, PORT), what="node2:7000 listens")

    unplugged = ticker.unplug(nodes=node2)
    assert unplugged.ok, unplugged
    assert not port_open(lab, "node1", node2_mgmt, PORT)
    assert ticker_pids(lab, "node2")  # still running: only its traffic is dropped

    recovered = cloud.recover(unplugged)
    assert recovered.ok, recovered
    assert port_open(lab, "node1", node2_mgmt, PORT)
    assert out(lab, "node2", "iptables -S INPUT | grep -c faultline || true") == "0"

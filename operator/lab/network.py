"""Lab networking: namespaces, bridges and veth pairs, built and torn down with `ip -batch`.

Control path: per node a veth from a bridge in the root namespace (gateway .1) to the
node's eth0. Management network: per node a veth from a bridge inside a separate hub
namespace to the node's eth1, so node-to-node traffic can be cut without cutting SSH.
Control ports are isolated from each other: nodes reach each other only over eth1.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from faultline.lab.layout import (
    GUARD_ROUTES,
    HUB_BRIDGE,
    NODE_CONTROL_IFACE,
    NODE_MGMT_IFACE,
    LabLayout,
    index_of,
)
from faultline.lab.registry import host_lock
from faultline.lab.system import LabError, run


def _batch(lines: list[str], netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, input="\n".join(lines) + "\n")


def build(layout: LabLayout) -> None:
    nodes = layout.nodes
    root = [f"netns add {layout.hub_netns}"]
    root += [f"netns add {n.netns}" for n in nodes]
    root += [
        f"link add {layout.bridge} type bridge",
        f"addr add {layout.gateway}/24 dev {layout.bridge}",
        f"link set {layout.bridge} up",
    ]
    for n in nodes:
        root += [
            f"link add {n.control_veth} type veth peer name {NODE_CONTROL_IFACE} netns {n.netns}",
            f"link set {n.control_veth} master {layout.bridge}",
            f"link set {n.control_veth} up",
            f"link add {n.mgmt_veth} netns {layout.hub_netns}"
            f" type veth peer name {NODE_MGMT_IFACE} netns {n.netns}",
        ]
    _batch(root)
    # Resolve nodes again quickly after a power cycle (default: one ARP retry per second).
    Path(f"/proc/sys/net/ipv4/neigh/{layout.bridge}/retrans_time_ms").write_text("100")
    run(
        ["bridge", "-batch", "-"],
        input="".join(f"link set dev {n.control_veth} isolated on\n" for n in nodes),
    )
    hub = ["link set lo up", f"link add {HUB_BRIDGE} type bridge", f"link set {HUB_BRIDGE} up"]
    for n in nodes:
        hub += [f"link set {n.mgmt_veth} master {HUB_BRIDGE}", f"link set {n.mgmt_veth} up"]
    jobs: list[tuple[list[str], str]] = [(hub, layout.hub_netns)]
    # Links come up now, not at first boot: the kernel may delay activating a link by up to
    # a second after a burst of link changes (linkwatch), and that would slow `lab up`.
    jobs += [
        (
            [
                "link set lo up",
                f"addr add {n.control_cidr} dev {NODE_CONTROL_IFACE}",
                f"addr add {n.mgmt_cidr} dev {NODE_MGMT_IFACE}",
                f"link set {NODE_CONTROL_IFACE} up",
                f"link set {NODE_MGMT_IFACE} up",
            ],
            n.netns,
        )
        for n in nodes
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(_batch, lines, ns) for lines, ns in jobs]:
            future.result()
    add_guard_routes()


def add_guard_routes() -> None:
    """Blackhole the lab ranges so a packet for a missing lab address never leaves the host."""
    with host_lock():
        present = run(["ip", "route", "show", "type", "blackhole"]).stdout
        for route in GUARD_ROUTES:
            if route not in present:
                run(["ip", "route", "add", "blackhole", route])


def remove_guard_routes_if_unused() -> None:
    with host_lock():
        if lab_indexes():
            return
        for route in GUARD_ROUTES:
            run(["ip", "route", "del", "blackhole", route], check=False)


def node_links_down(netns: str) -> None:
    """A powered-off node: its cables go dark, so clients time out like on a dead host."""
    lines = [f"link set {NODE_CONTROL_IFACE} down", f"link set {NODE_MGMT_IFACE} down"]
    run(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n", check=False)


def netns_names() -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


def root_links() -> list[str]:
    out = run(["ip", "-j", "link", "show"]).stdout
    return [entry["ifname"] for entry in json.loads(out)]


def lab_indexes() -> set[int]:
    """Indexes of every lab that has kernel objects on this host (live or leftover)."""
    found = {index_of(name) for name in [*netns_names(), *root_links()]}
    return {i for i in found if i is not None}


def teardown(prefix: str) -> None:
    """Delete every namespace and root link named with `prefix`; idempotent.

    Deleting a namespace destroys the veth ends inside it and so their peers as well.
    """
    lines = [f"netns del {ns}" for ns in netns_names() if ns.startswith(prefix)]
    lines += [f"link del {link}" for link in root_links() if link.startswith(prefix)]
    if lines:
        # -force: keep going when something vanished in between.
        run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
    leftovers = [n for n in [*netns_names(), *root_links()] if n.startswith(prefix)]
    if leftovers:
        raise LabError(f"could not remove {', '.join(leftovers)}")

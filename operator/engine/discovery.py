"""Nodes from every discovery source in the config, merged into one static list.

Static nodes come first and win: a discovered node with the same fqdn or IP only adds the
labels the static entry does not set. Each source lives in its driver module; this module
only asks them and merges, so the rest of the engine sees one list of NodeSpec.
"""

from __future__ import annotations

from faultline.models.config import CloudConfig, NodeSpec, StaticDiscovery


def merge_nodes(static: list[NodeSpec], found: list[NodeSpec]) -> list[NodeSpec]:
    by_key: dict[str, NodeSpec] = {}
    out: list[NodeSpec] = []
    for node in static:
        copy = node.model_copy(deep=True)
        out.append(copy)
        by_key[copy.fqdn] = by_key[copy.ip] = copy
    for node in found:
        known = by_key.get(node.fqdn) or by_key.get(node.ip)
        if known is not None:
            known.labels = {**node.labels, **known.labels}
            continue
        copy = node.model_copy(deep=True)
        out.append(copy)
        by_key[copy.fqdn] = by_key[copy.ip] = copy
    return out


async def discovered_config(config: CloudConfig) -> CloudConfig:
    """`config` with the nodes of every discovery source in `discovery.static`."""
    found: list[NodeSpec] = []
    if config.discovery.openstack is not None and config.openstack is not None:
        from faultline.drivers.openstack import discover_nodes

        found += await discover_nodes(config.openstack, config.discovery.openstack)
    if config.discovery.ganeti is not None and config.ganeti is not None:
        from faultline.drivers.ganeti import discover_nodes as ganeti_nodes

        found += await ganeti_nodes(config.ganeti, config.discovery.ganeti)
    # (other sources append to `found` here)
    if not found:
        return config
    nodes = merge_nodes(config.nodes, found)
    discovery = config.discovery.model_copy(update={"static": StaticDiscovery(nodes=nodes)})
    return config.model_copy(update={"discovery": discovery})

"""os-faults' ipmi power management becomes per-node BMCs; inline passwords are refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from faultline.drivers.power import PowerTarget, build_backend
from faultline.models.config import parse_config
from faultline.models.errors import ConfigError

OSFAULTS: dict[str, Any] = {
    "cloud_management": {"driver": "universal"},
    "node_discover": {
        "driver": "node_list",
        "args": [
            {"fqdn": "node1.local", "ip": "192.168.5.127", "mac": "52:54:00:AA:00:01"},
            {"fqdn": "node2.local", "ip": "192.168.5.128", "mac": "52:54:00:aa:00:02"},
            {"fqdn": "node3.local", "ip": "192.168.5.129"},
        ],
    },
    "power_managements": [
        {
            "driver": "ipmi",
            "args": {
                "mac_to_bmc": {
                    "52:54:00:aa:00:01": {
                        "address": "10.0.0.1",
                        "username": "admin",
                        "password_file": "/etc/faultline/bmc1",
                    }
                },
                "fqdn_to_bmc": {
                    "node2.local": {
                        "address": "10.0.0.2",
                        "port": 6230,
                        "username": "root",
                        "passwordFile": "/etc/faultline/bmc2",
                    }
                },
            },
        }
    ],
}


def test_bmcs_land_on_their_nodes_and_the_backend_covers_them() -> None:
    config = parse_config(copy.deepcopy(OSFAULTS))
    nodes = {n.fqdn: n for n in config.nodes}
    bmc1, bmc2 = nodes["node1.local"].bmc, nodes["node2.local"].bmc
    assert bmc1 is not None and bmc2 is not None
    assert (bmc1.address, bmc1.port, bmc1.username, bmc1.password_file) == (
        "10.0.0.1",
        None,
        "admin",
        "/etc/faultline/bmc1",
    )
    assert (bmc2.address, bmc2.port, bmc2.username) == ("10.0.0.2", 6230, "root")
    assert nodes["node3.local"].bmc is None
    (power,) = config.power
    assert power.driver == "ipmi"
    assert sorted(power.nodes) == ["node1.local", "node2.local"]
    backend = build_backend(power)
    covered = [
        n.fqdn for n in config.nodes if backend.covers(PowerTarget(n.fqdn, n.ip, n.mac, n.bmc))
    ]
    assert covered == ["node1.local", "node2.local"]


def test_inline_password_is_refused_and_not_repeated() -> None:
    data = copy.deepcopy(OSFAULTS)
    bmc = data["power_managements"][0]["args"]["fqdn_to_bmc"]["node2.local"]
    del bmc["passwordFile"]
    bmc["password"] = "Sup3rSecret"  # noqa: S105 - what the config must refuse
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert "fqdn_to_bmc.node2.local.password" in message
    assert "passwordFile" in message
    assert "Sup3rSecret" not in message


@pytest.mark.parametrize(
    ("key", "name", "expected"),
    [
        ("mac_to_bmc", "52:54:00:aa:00:09", "no node with mac 52:54:00:aa:00:09"),
        ("fqdn_to_bmc", "node9.local", "no node with fqdn node9.local"),
    ],
)
def test_a_bmc_for_an_unknown_node_is_an_error(key: str, name: str, expected: str) -> None:
    data = copy.deepcopy(OSFAULTS)
    data["power_managements"][0]["args"][key][name] = {"address": "10.0.0.9"}
    with pytest.raises(ConfigError, match=expected):
        parse_config(data)


def test_unknown_ipmi_args_are_errors() -> None:
    data = copy.deepcopy(OSFAULTS)
    data["power_managements"][0]["args"]["interface"] = "lanplus"
    with pytest.raises(ConfigError, match="interface"):
        parse_config(data)
    config = parse_config(
        {
            "discovery": {"static": {"nodes": [{"fqdn": "n1", "ip": "10.0.0.1"}]}},
            "power": [{"driver": "ipmi", "args": {"retires": 3}}],
        }
    )
    with pytest.raises(ConfigError, match=r"args\.retires"):
        build_backend(config.power[0])

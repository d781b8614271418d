"""The OpenStack side without a cloud: config errors, mapping Nova hosts to nodes, sentences,
and the markHostDown plan. What talks to Nova is tested in tests/openstack on a real one."""

from __future__ import annotations

from typing import Any

import pytest

from faultline.drivers.openstack import nodes_from
from faultline.human import parse
from faultline.models.config import parse_config
from faultline.models.errors import ConfigError, SentenceError
from faultline.models.faults import FaultKind
from faultline.models.openstack import OpenStackDiscovery
from faultline.models.resources import FaultInjectionSpec
from faultline.reconcile.plan import plan

NODES = {"static": {"nodes": [{"fqdn": "node1", "ip": "10.0.0.11"}]}}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, "say how to log in"),
        ({"cloud": "x", "authUrl": "http://k/v3", "username": "u"}, "not both"),
        ({"authUrl": "http://k/v3", "username": "u", "projectName": "p"}, "passwordFile"),
        ({"authUrl": "http://k/v3", "passwordFile": "/p"}, "projectName"),
        ({"cloud": "x", "computeMicroversion": "latest"}, "computeMicroversion"),
    ],
)
def test_bad_openstack_section_is_named(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"discovery": NODES, "openstack": section})
    assert "openstack" in str(err.value) and message in str(err.value)


def test_openstack_discovery_needs_credentials() -> None:
    with pytest.raises(ConfigError, match=r"discovery\.openstack needs the `openstack` section"):
        parse_config({"discovery": {"openstack": {}}})


def test_clouds_yaml_entry_is_enough() -> None:
    config = parse_config(
        {"discovery": {"openstack": {}}, "openstack": {"cloud": "prod", "cloudsFile": "/c"}}
    )
    assert config.openstack is not None and config.openstack.cloud == "prod"
    assert config.openstack.insecure is False


SERVICES = [
    {"host": "cmp1", "binary": "nova-compute", "state": "up", "availability_zone": "az1"},
    {"host": "cmp2", "binary": "nova-compute", "state": "down", "availability_zone": "az2"},
    {"host": "ctl1", "binary": "nova-conductor", "state": "up", "availability_zone": "internal"},
    {"host": "ctl1", "binary": "nova-scheduler", "state": "up", "availability_zone": "internal"},
    {"host": "ctl2", "binary": "nova-conductor", "state": "up", "availability_zone": "internal"},
]
HYPERVISORS = [
    {"name": "cmp1.local", "hypervisor_hostname": "cmp1.local", "host_ip": "10.0.0.21",
     "service_details": {"host": "cmp1"}},
    {"name": "cmp2.local", "hypervisor_hostname": "cmp2.local", "host_ip": "10.0.0.22",
     "service_details": {"host": "cmp2"}},
]  # fmt: skip


def resolve(host: str) -> str | None:
    return {"ctl1": "10.0.0.1"}.get(host)


def test_nova_hosts_become_nodes_by_host_ip() -> None:
    nodes = nodes_from(SERVICES, HYPERVISORS, OpenStackDiscovery(), resolve)
    by = {n.fqdn: n for n in nodes}
    assert sorted(by) == ["cmp1", "cmp2", "ctl1"]  # ctl2 has no address: left out, logged
    assert by["cmp1"].ip == "10.0.0.21"
    assert by["cmp1"].labels == {
        "role": "compute",
        "nova.host": "cmp1",
        "az": "az1",
        "nova.nova-compute": "up",
        "nova.hypervisor": "cmp1.local",
    }
    assert by["cmp2"].labels["nova.nova-compute"] == "down"
    assert by["ctl1"].ip == "10.0.0.1"
    assert by["ctl1"].labels["role"] == "controller"
    assert by["ctl1"].labels["nova.nova-scheduler"] == "up"


def test_host_mapping_wins_and_controllers_can_be_left_out() -> None:
    spec = OpenStackDiscovery(hosts={"cmp2": "192.168.0.2"}, controllers=False)
    nodes = nodes_from(SERVICES, HYPERVISORS, spec, resolve)
    assert [(n.fqdn, n.ip) for n in nodes] == [("cmp1", "10.0.0.21"), ("cmp2", "192.168.0.2")]


@pytest.mark.parametrize(
    ("text", "action", "fqdns"),
    [
        ("force down nova-compute service on node compute1", "force-down", ("compute1",)),
        ("force-down nova-compute service on compute1 node", "force-down", ("compute1",)),
        ("unset force down nova-compute service on node a", "unset-force-down", ("a",)),
        ("disable nova-compute service on nodes a and b", "disable", ("a", "b")),
        ("enable nova-compute service on node b for 30s", "enable", ("b",)),
    ],
)
def test_nova_sentences(text: str, action: str, fqdns: tuple[str, ...]) -> None:
    sentence = parse(text)
    assert (sentence.kind, sentence.action, sentence.target) == (
        FaultKind.NOVA,
        action,
        "nova-compute",
    )
    assert sentence.selector is not None and sentence.selector.fqdns == fqdns
    assert parse(sentence.canonical()) == sentence


def test_poweroff_and_mark_it_down() -> None:
    sentence = parse("poweroff one node and mark it down for 60 seconds")
    assert sentence.action == "poweroff" and sentence.mark_host_down
    assert sentence.params == {"mark_host_down": True, "sec": 60}
    assert parse(sentence.canonical()) == sentence
    assert parse("poweroff node node3 and mark it down").selector.fqdns == ("node3",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("force nova-compute service on node x", "nova-compute", "down"),
        ("reboot one node and mark it down", "and", "end of sentence"),
        ("poweroff one node and mark down", "down", "it or them"),
        ("disable nova-compute on node x", "on", "service"),
        ("force down nova-compute service", "", "on"),
    ],
)
def test_bad_nova_sentences_point_at_the_word(text: str, where: str, expected: str) -> None:
    with pytest.raises(SentenceError) as err:
        parse(text)
    assert f"expected {expected}" in str(err.value) or expected in str(err.value)
    if where:
        assert f"at '{where}'" in str(err.value)


def injection(**spec: Any) -> FaultInjectionSpec:
    return FaultInjectionSpec.model_validate({"targetRef": {"name": "t"}, **spec})


def test_mark_host_down_reaches_the_power_fault() -> None:
    the_plan = plan(injection(command="poweroff node node2", markHostDown=True))
    assert the_plan.fault.kind == FaultKind.POWER
    assert the_plan.fault.params == {"mark_host_down": True}
    sentence_plan = plan(injection(command="poweroff node node2 and mark it down"))
    assert sentence_plan.fault.params == {"mark_host_down": True}


def test_mark_host_down_on_anything_but_power_off_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"spec.markHostDown: applies to powering nodes off"):
        plan(injection(command="kill memcached service on one node", markHostDown=True))


def test_nova_sentence_plans_a_nova_fault() -> None:
    the_plan = plan(injection(command="force down nova-compute service on node node2"))
    fault = the_plan.fault
    assert (fault.kind, fault.action, fault.target, fault.params) == (
        FaultKind.NOVA,
        "force-down",
        "nova-compute",
        {},
    )
    assert the_plan.selector.fqdns == ["node2"]

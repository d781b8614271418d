"""Tests of the human API: the sentence parser, its errors, and node selection.

The ``human_api`` tests run against FakeCloud below, a small stand-in for the real cloud object
(faultline.api) that records every call. It implements only the public calls the human API
is allowed to make; the real cloud is exercised by the lab tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from faultline.human import (
    ACTIONS,
    NODE_ACTIONS,
    SERVICE_ACTIONS,
    Selector,
    Sentence,
    human_api,
    parse,
    prepare,
)
from faultline.models.errors import (
    NoNodesSelectedError,
    SentenceError,
    UnknownContainerError,
    UnknownNodeError,
    UnknownServiceError,
)
from faultline.models.faults import FaultKind

# --------------------------------------------------------------------------- parse: forms


def sel(mode: str, value: int | None = None, *fqdns: str) -> Selector:
    return Selector(mode, value, tuple(fqdns))  # type: ignore[arg-type]


ONE = sel("one", 1)
ALL = sel("all")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # os-faults: README, CLI help, quickstart and its own unit tests
        ("restart keystone service", Sentence(FaultKind.SERVICE, "restart", "keystone")),
        ("restart etcd service", Sentence(FaultKind.SERVICE, "restart", "etcd")),
        ("kill nova-api service", Sentence(FaultKind.SERVICE, "kill", "nova-api")),
        (
            "kill nova-api service on one node",
            Sentence(FaultKind.SERVICE, "kill", "nova-api", ONE),
        ),
        (
            "restart keystone service on random node",
            Sentence(FaultKind.SERVICE, "restart", "keystone", ONE),
        ),
        (
            "freeze keystone service for 5 seconds",
            Sentence(FaultKind.SERVICE, "freeze", "keystone", duration=5),
        ),
        (
            "kill nova-api service on node-2.local node",
            Sentence(FaultKind.SERVICE, "kill", "nova-api", sel("fqdns", None, "node-2.local")),
        ),
        (
            "Restart neutron_ovs_agent container",
            Sentence(FaultKind.CONTAINER, "restart", "neutron_ovs_agent"),
        ),
        (
            "Terminate neutron_api container on one node",
            Sentence(FaultKind.CONTAINER, "terminate", "neutron_api", ONE),
        ),
        (
            "reboot node with keystone service",
            Sentence(FaultKind.NODE, "reboot", selector=ALL, with_service="keystone"),
        ),
        (
            "reset one node with nova-api service",
            Sentence(FaultKind.NODE, "reset", selector=ONE, with_service="nova-api"),
        ),
        (
            "Reset node-2.domain.tld node",
            Sentence(FaultKind.NODE, "reset", selector=sel("fqdns", None, "node-2.domain.tld")),
        ),
        (
            "Poweroff node-2.local node",
            Sentence(FaultKind.NODE, "poweroff", selector=sel("fqdns", None, "node-2.local")),
        ),
        (
            "Poweron node-2.local node",
            Sentence(FaultKind.NODE, "poweron", selector=sel("fqdns", None, "node-2.local")),
        ),
        (
            "stress cpu for 20 seconds on node-2.local node",
            Sentence(
                FaultKind.NODE,
                "stress",
                selector=sel("fqdns", None, "node-2.local"),
                duration=20,
                stress_target="cpu",
            ),
        ),
        (
            "stress memory for 20 seconds on nodes",
            Sentence(FaultKind.NODE, "stress", selector=ALL, duration=20, stress_target="memory"),
        ),
        (
            "stress disk for 20 seconds on nodes",
            Sentence(FaultKind.NODE, "stress", selector=ALL, duration=20, stress_target="io"),
        ),
        (
            "stress CPU for 10 seconds on all nodes with keystone service",
            Sentence(
                FaultKind.NODE,
                "stress",
                selector=ALL,
                with_service="keystone",
                duration=10,
                stress_target="cpu",
            ),
        ),
        (
            "Disconnect management network on nodes with rabbitmq service",
            Sentence(FaultKind.NETWORK, "disconnect", "management", ALL, with_service="rabbitmq"),
        ),
        (
            "Connect storage network on node-1.domain.tld node",
            Sentence(
                FaultKind.NETWORK, "connect", "storage", sel("fqdns", None, "node-1.domain.tld")
            ),
        ),
        (
            "disconnect storage network on node with mysql service",
            Sentence(FaultKind.NETWORK, "disconnect", "storage", ALL, with_service="mysql"),
        ),
        (
            "connect management network on random node with rabbitmq service",
            Sentence(FaultKind.NETWORK, "connect", "management", ONE, with_service="rabbitmq"),
        ),
        # the forms in Faultline's brief
        (
            "kill memcached service on one node",
            Sentence(FaultKind.SERVICE, "kill", "memcached", ONE),
        ),
        (
            "freeze memcached service on node2 node for 10 seconds",
            Sentence(
                FaultKind.SERVICE, "freeze", "memcached", sel("fqdns", None, "node2"), duration=10
            ),
        ),
        (
            "terminate redis service on all nodes",
            Sentence(FaultKind.SERVICE, "terminate", "redis", ALL),
        ),
        (
            "start memcached service on single node",
            Sentence(FaultKind.SERVICE, "start", "memcached", ONE),
        ),
        (
            "unplug memcached service on some node for 1 minute",
            Sentence(FaultKind.SERVICE, "unplug", "memcached", ONE, duration=60),
        ),
        ("plug memcached service", Sentence(FaultKind.SERVICE, "plug", "memcached")),
        ("unfreeze memcached service", Sentence(FaultKind.SERVICE, "unfreeze", "memcached")),
        (
            "start web container on 2 nodes",
            Sentence(FaultKind.CONTAINER, "start", "web", sel("count", 2)),
        ),
        (
            "reboot one node with mysql service",
            Sentence(FaultKind.NODE, "reboot", selector=ONE, with_service="mysql"),
        ),
        (
            "reset node2 node",
            Sentence(FaultKind.NODE, "reset", selector=sel("fqdns", None, "node2")),
        ),
        ("poweroff all nodes", Sentence(FaultKind.NODE, "poweroff", selector=ALL)),
        ("shutdown one node", Sentence(FaultKind.NODE, "shutdown", selector=ONE)),
        (
            "oom one node with memcached service",
            Sentence(FaultKind.NODE, "oom", selector=ONE, with_service="memcached"),
        ),
        (
            "stress cpu on one node for 30 seconds",
            Sentence(FaultKind.NODE, "stress", selector=ONE, duration=30, stress_target="cpu"),
        ),
        (
            "stress io on 50% of nodes with redis service for 2 minutes",
            Sentence(
                FaultKind.NODE,
                "stress",
                selector=sel("percent", 50),
                with_service="redis",
                duration=120,
                stress_target="io",
            ),
        ),
        (
            "stress one node",
            Sentence(FaultKind.NODE, "stress", selector=ONE, stress_target="cpu"),
        ),
        (
            "stress mem on node1 node",
            Sentence(
                FaultKind.NODE,
                "stress",
                selector=sel("fqdns", None, "node1"),
                stress_target="memory",
            ),
        ),
        (
            "disconnect management network on one node with rabbitmq service for 20 seconds",
            Sentence(
                FaultKind.NETWORK,
                "disconnect",
                "management",
                ONE,
                with_service="rabbitmq",
                duration=20,
            ),
        ),
        # extensions: counts, percentages, fqdn lists
        (
            "kill memcached service on 2 nodes",
            Sentence(FaultKind.SERVICE, "kill", "memcached", sel("count", 2)),
        ),
        (
            "kill memcached service on 1 node",
            Sentence(FaultKind.SERVICE, "kill", "memcached", sel("count", 1)),
        ),
        (
            "kill memcached service on 30% of nodes",
            Sentence(FaultKind.SERVICE, "kill", "memcached", sel("percent", 30)),
        ),
        (
            "kill memcached service on 30 % of the nodes",
            Sentence(FaultKind.SERVICE, "kill", "memcached", sel("percent", 30)),
        ),
        (
            "kill memcached service on 100 percent of nodes",
            Sentence(FaultKind.SERVICE, "kill", "memcached", sel("percent", 100)),
        ),
        (
            "reboot node1, node2 nodes",
            Sentence(FaultKind.NODE, "reboot", selector=sel("fqdns", None, "node1", "node2")),
        ),
        (
            "reboot node1,node2 and node3 nodes",
            Sentence(
                FaultKind.NODE, "reboot", selector=sel("fqdns", None, "node1", "node2", "node3")
            ),
        ),
        (
            "reboot node1, node2, and node1 nodes",
            Sentence(FaultKind.NODE, "reboot", selector=sel("fqdns", None, "node1", "node2")),
        ),
        (
            "reboot 10.0.0.2 node",
            Sentence(FaultKind.NODE, "reboot", selector=sel("fqdns", None, "10.0.0.2")),
        ),
        ("reboot on one node", Sentence(FaultKind.NODE, "reboot", selector=ONE)),
        # clauses in any order, compact durations, odd spacing and case
        (
            "disconnect mgmt network for 20s with rabbitmq service on one node",
            Sentence(
                FaultKind.NETWORK, "disconnect", "mgmt", ONE, with_service="rabbitmq", duration=20
            ),
        ),
        (
            "FREEZE Memcached SERVICE  FOR 2 Min ON One Node",
            Sentence(FaultKind.SERVICE, "freeze", "Memcached", ONE, duration=120),
        ),
        (
            "freeze memcached service for 3m",
            Sentence(FaultKind.SERVICE, "freeze", "memcached", duration=180),
        ),
        (
            "  kill memcached service  ",
            Sentence(FaultKind.SERVICE, "kill", "memcached"),
        ),
        # Ganeti through RAPI: the object after "ganeti", then where
        (
            "shutdown ganeti instance on inst1.example.org node for 5 minutes",
            Sentence(
                FaultKind.GANETI,
                "shutdown",
                "instance",
                sel("fqdns", None, "inst1.example.org"),
                duration=300,
            ),
        ),
        ("drain ganeti node on one node", Sentence(FaultKind.GANETI, "drain", "node", ONE)),
        (
            "Reboot Ganeti Instances on all nodes",
            Sentence(FaultKind.GANETI, "reboot", "instance", ALL),
        ),
        (
            "startup ganeti instance on 2 nodes",
            Sentence(FaultKind.GANETI, "startup", "instance", sel("count", 2)),
        ),
    ],
)
def test_parse(text: str, expected: Sentence) -> None:
    parsed = parse(text)
    assert parsed == expected
    assert parsed.text == text
    # the canonical form parses back to the same thing
    assert parse(parsed.canonical()) == parsed


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [
        ("seconds", 7),
        ("second", 7),
        ("secs", 7),
        ("sec", 7),
        ("s", 7),
        ("minutes", 420),
        ("minute", 420),
        ("mins", 420),
        ("min", 420),
        ("m", 420),
    ],
)
def test_duration_units(unit: str, seconds: int) -> None:
    assert parse(f"freeze x service for 7 {unit}").duration == seconds
    assert parse(f"freeze x service for 7{unit}").duration == seconds


@pytest.mark.parametrize("action", SERVICE_ACTIONS)
def test_every_service_action(action: str) -> None:
    parsed = parse(f"{action} svc service on one node for 3 seconds")
    assert (parsed.kind, parsed.action, parsed.duration) == (FaultKind.SERVICE, action, 3)


@pytest.mark.parametrize("action", NODE_ACTIONS)
def test_every_node_action(action: str) -> None:
    parsed = parse(f"{action} all nodes with svc service")
    assert (parsed.kind, parsed.action, parsed.with_service) == (FaultKind.NODE, action, "svc")


def test_names_keep_their_case_keywords_do_not() -> None:
    parsed = parse("Disconnect Mgmt Network On Node-1.Local Node With RabbitMQ Service")
    assert parsed.action == "disconnect"
    assert parsed.target == "Mgmt"
    assert parsed.with_service == "RabbitMQ"
    assert parsed.selector is not None
    assert parsed.selector.fqdns == ("Node-1.Local",)


def test_selector_text_is_the_phrase_as_written() -> None:
    parsed = parse("kill x service on 30 % of the nodes for 5 s")
    assert parsed.selector is not None
    assert parsed.selector.text == "30 % of the nodes"


def test_params() -> None:
    assert parse("stress io on one node for 9 s").params == {"target": "io", "sec": 9}
    assert parse("connect mgmt network on all nodes").params == {"network_name": "mgmt"}
    assert parse("kill x service").params == {}


# --------------------------------------------------------------------------- parse: errors


def error_of(text: str) -> SentenceError:
    with pytest.raises(SentenceError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("kil memcached service", "kil", list(ACTIONS)),
        ("inject some fault", "inject", list(ACTIONS)),
        ("", "", list(ACTIONS)),
        ("kill memcached servce", "servce", ["service"]),
        ("start memcached servce", "servce", ["service", "container"]),
        ("restart web containr on one node", "containr", ["service", "container"]),
        ("disconnect mgmt netwrk on one node", "netwrk", ["network"]),
        ("kill memcached", "", ["service"]),
        ("kill service", "service", ["<service name>"]),
        ("kill", "", ["<service name>"]),
        ("kill memcached service on one", "", ["node"]),
        ("kill memcached service on all", "", ["nodes"]),
        ("kill memcached service on 3", "", ["nodes"]),
        ("kill memcached service on 30%", "", ["of", "nodes"]),
        ("kill memcached service on 30% of", "", ["nodes"]),
        ("kill memcached service on node2", "", ["node"]),
        ("kill memcached service on node2, node3", "", ["nodes"]),
        ("kill memcached service on node2,", "", ["<fqdn>"]),
        (
            "kill memcached service on",
            "",
            ["one", "random", "single", "some", "all", "<N>", "<P>%", "<fqdn>", "node", "nodes"],
        ),
        ("kill memcached service on 0 nodes", "0", ["<N> of at least 1"]),
        ("kill memcached service on 0% of nodes", "0%", ["<P>% with P from 1 to 100"]),
        ("kill memcached service on 150% of nodes", "150%", ["<P>% with P from 1 to 100"]),
        ("kill memcached service on one node;", "node;", ["node"]),
        ("kill memcached service on one node please", "please", ["for", "end of sentence"]),
        ("kill memcached service in one node", "in", ["on", "for", "end of sentence"]),
        ("kill memcached service on one node on all nodes", "on", ["for", "end of sentence"]),
        ("kill memcached service with x service", "with", ["on", "for", "end of sentence"]),
        ("freeze memcached service for ten seconds", "ten", ["<N>"]),
        ("freeze memcached service for", "", ["<N>"]),
        ("freeze memcached service for 10", "", ["seconds", "minutes"]),
        ("freeze memcached service for 10 hours", "hours", ["seconds", "minutes"]),
        ("freeze memcached service for 10h", "10h", ["<N>"]),
        ("freeze memcached service for 0 seconds", "0", ["<N> of at least 1"]),
        (
            "freeze memcached service for 5 s for 6 s",
            "for",
            ["on", "end of sentence"],
        ),
        (
            "reboot",
            "",
            [
                "on",
                "one",
                "random",
                "single",
                "some",
                "all",
                "<N>",
                "<P>%",
                "<fqdn>",
                "node",
                "nodes",
            ],
        ),
        ("reboot node2", "", ["node"]),
        ("reboot mysql service", "service", ["node"]),
        ("reboot one node wth mysql service", "wth", ["with", "for", "end of sentence"]),
        ("reboot one node with mysql servce", "servce", ["service"]),
        ("reboot one node with", "", ["<service name>"]),
        # os-faults' README example: os-faults silently ignored "with mysql" and rebooted
        # any node; here it is an error.
        ("Reboot one node with mysql", "", ["service"]),
        ("stress gpu on one node", "gpu", ["cpu", "memory", "io"]),
        ("stress kernel for 20 seconds on nodes", "kernel", ["cpu", "memory", "io"]),
        ("disconnect mgmt network one node", "one", ["on", "with", "for"]),
        ("disconnect mgmt network", "", ["on"]),
        ("connect mgmt network on one node for 10 seconds", "for", ["with", "end of sentence"]),
        # Ganeti: the verb says which object; "ganeti" is required for Ganeti-only verbs
        ("drain one node", "one", ["ganeti"]),
        ("startup ganeti node on one node", "node", ["instance"]),
        ("offline ganeti instance on one node", "instance", ["node"]),
        ("drain ganeti node", "", ["on"]),
        ("drain ganeti node on one node with mysql service", "with", ["for", "end of sentence"]),
    ],
)
def test_parse_errors(text: str, word: str, expected: list[str]) -> None:
    err = error_of(text)
    assert err.word == word
    assert err.expected == expected
    assert err.sentence == text
    if word:
        # the position is the offset of the offending word
        assert text[err.position : err.position + len(word)] == word
    else:
        assert err.position == len(text.rstrip())


def test_error_positions_point_at_the_word() -> None:
    assert error_of("kil memcached service").position == 0
    assert error_of("kill memcached servce").position == 15
    assert error_of("kill memcached service on one").position == 29
    err = error_of("freeze memcached service for ten seconds")
    assert err.position == 29
    assert "^" in str(err).splitlines()[-1]
    assert str(err).splitlines()[-1].index("^") == 2 + 29


def test_error_points_at_the_repeated_word_not_the_first() -> None:
    text = "kill x service on one node on one node"
    assert error_of(text).position == text.rindex("on one")


# --------------------------------------------------------------------------- selector rounding


@pytest.mark.parametrize(
    ("percent", "available", "count"),
    [
        (30, 10, 3),  # exact; float arithmetic would be tempted to say 4
        (30, 3, 1),  # 0.9 rounds up
        (1, 3, 1),  # at least one
        (50, 3, 2),
        (34, 3, 2),
        (33, 3, 1),
        (100, 7, 7),
        (10, 1, 1),
        (70, 10, 7),
        (29, 100, 29),
        (57, 100, 57),
    ],
)
def test_percent_rounds_up_to_at_least_one(percent: int, available: int, count: int) -> None:
    assert sel("percent", percent).count_of(available) == count


def test_count_of() -> None:
    assert sel("one", 1).count_of(5) == 1
    assert sel("count", 3).count_of(5) == 3
    assert sel("count", 7).count_of(5) == 7  # too many: prepare() refuses, see below
    assert sel("all").count_of(5) is None
    assert sel("fqdns", None, "a", "b").count_of(5) == 2


# --------------------------------------------------------------------------- the fake cloud


@dataclass(frozen=True)
class FakeNode:
    fqdn: str
    ip: str


@dataclass(frozen=True)
class Call:
    receiver: str
    action: str
    nodes: tuple[str, ...] | None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeResult:
    call: Call


class FakeNodes:
    """A node collection: set algebra by fqdn, a seeded random pick, recorded actions."""

    def __init__(self, cloud: FakeCloud, nodes: Iterable[FakeNode]) -> None:
        self.cloud = cloud
        self.nodes = tuple(sorted(set(nodes), key=lambda n: n.fqdn))

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[FakeNode]:
        return iter(self.nodes)

    def __and__(self, other: FakeNodes) -> FakeNodes:
        return FakeNodes(self.cloud, set(self.nodes) & set(other.nodes))

    def __or__(self, other: FakeNodes) -> FakeNodes:
        return FakeNodes(self.cloud, set(self.nodes) | set(other.nodes))

    def __sub__(self, other: FakeNodes) -> FakeNodes:
        return FakeNodes(self.cloud, set(self.nodes) - set(other.nodes))

    @property
    def fqdns(self) -> tuple[str, ...]:
        return tuple(n.fqdn for n in self.nodes)

    def pick(self, count: int = 1) -> FakeNodes:
        self.cloud.picks.append((self.fqdns, count))
        if count > len(self.nodes):
            raise ValueError(f"cannot pick {count} out of {len(self.nodes)}")
        return FakeNodes(self.cloud, self.cloud.rng.sample(self.nodes, count))

    def filter(self, predicate: Callable[[FakeNode], bool]) -> FakeNodes:
        return FakeNodes(self.cloud, (n for n in self.nodes if predicate(n)))

    def _act(self, action: str, **kwargs: Any) -> FakeResult:
        call = Call("nodes", action, self.fqdns, kwargs)
        self.cloud.calls.append(call)
        return FakeResult(call)

    def reboot(self, sec: int | None = None) -> FakeResult:
        return self._act("reboot", sec=sec)

    def shutdown(self, sec: int | None = None) -> FakeResult:
        return self._act("shutdown", sec=sec)

    def poweroff(self, sec: int | None = None) -> FakeResult:
        return self._act("poweroff", sec=sec)

    def poweron(self, sec: int | None = None) -> FakeResult:
        return self._act("poweron", sec=sec)

    def reset(self, sec: int | None = None) -> FakeResult:
        return self._act("reset", sec=sec)

    def oom(self, sec: int | None = None) -> FakeResult:
        return self._act("oom", sec=sec)

    def stress(self, target: str = "cpu", sec: int | None = None) -> FakeResult:
        return self._act("stress", target=target, sec=sec)

    def disconnect(self, network_name: str, sec: int | None = None) -> FakeResult:
        return self._act("disconnect", network_name=network_name, sec=sec)

    def connect(self, network_name: str) -> FakeResult:
        return self._act("connect", network_name=network_name)


class FakeService:
    def __init__(self, cloud: FakeCloud, name: str, fqdns: Iterable[str]) -> None:
        self.cloud = cloud
        self.name = name
        self.fqdns = tuple(fqdns)

    def get_nodes(self) -> FakeNodes:
        return self.cloud.get_nodes(list(self.fqdns)) if self.fqdns else FakeNodes(self.cloud, ())

    def _act(self, action: str, nodes: FakeNodes | None, **kwargs: Any) -> FakeResult:
        call = Call(self.name, action, None if nodes is None else nodes.fqdns, kwargs)
        self.cloud.calls.append(call)
        return FakeResult(call)

    def start(self, nodes: FakeNodes | None = None, sec: int | None = None) -> FakeResult:
        return self._act("start", nodes, sec=sec)

    def terminate(self, nodes: FakeNodes | None = None, sec: int | None = None) -> FakeResult:
        return self._act("terminate", nodes, sec=sec)

    def restart(self, nodes: FakeNodes | None = None, sec: int | None = None) -> FakeResult:
        return self._act("restart", nodes, sec=sec)

    def kill(self, nodes: FakeNodes | None = None, sec: int | None = None) -> FakeResult:
        return self._act("kill", nodes, sec=sec)

    def freeze(self, nodes: FakeNodes | None = None, sec: int | None = None) -> FakeResult:
        return self._act("freeze", nodes, sec=sec)

    def unfreeze(self, nodes: FakeNodes | None = None, sec: int | None = None) -> FakeResult:
        return self._act("unfreeze", nodes, sec=sec)

    def plug(
        self, nodes: FakeNodes | None = None, sec: int | None = None, direction: str = "both"
    ) -> FakeResult:
        return self._act("plug", nodes, sec=sec, direction=direction)

    def unplug(
        self, nodes: FakeNodes | None = None, sec: int | None = None, direction: str = "both"
    ) -> FakeResult:
        return self._act("unplug", nodes, sec=sec, direction=direction)


class FakeContainer(FakeService):
    """Containers have start, terminate and restart only."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("kill", "freeze", "unfreeze", "plug", "unplug"):
            raise AttributeError(name)
        return super().__getattribute__(name)


class FakeCloud:
    """Stand-in for faultline.api's cloud object: only the calls the human API may make.

    `calls` records every action (service, container or node collection), `lookups` every
    get_* call, `picks` every pick (candidates, count). Picks are random with a fixed seed.
    """

    def __init__(
        self,
        nodes: Iterable[str],
        services: dict[str, list[str]] | None = None,
        containers: dict[str, list[str]] | None = None,
        seed: int = 7,
    ) -> None:
        self.all_nodes = {
            fqdn: FakeNode(fqdn, f"10.0.0.{i}") for i, fqdn in enumerate(nodes, start=1)
        }
        self.services = services or {}
        self.containers = containers or {}
        self.rng = random.Random(seed)
        self.calls: list[Call] = []
        self.lookups: list[tuple[str, Any]] = []
        self.picks: list[tuple[tuple[str, ...], int]] = []

    def get_service(self, name: str) -> FakeService:
        self.lookups.append(("get_service", name))
        if name not in self.services:
            raise UnknownServiceError(name, self.services)
        return FakeService(self, name, self.services[name])

    def get_container(self, name: str) -> FakeContainer:
        self.lookups.append(("get_container", name))
        if name not in self.containers:
            raise UnknownContainerError(name, self.containers)
        return FakeContainer(self, name, self.containers[name])

    def get_nodes(self, fqdns: list[str] | None = None) -> FakeNodes:
        self.lookups.append(("get_nodes", None if fqdns is None else tuple(fqdns)))
        if fqdns is None:
            return FakeNodes(self, self.all_nodes.values())
        unknown = [f for f in fqdns if f not in self.all_nodes]
        if unknown:
            raise UnknownNodeError(unknown, self.all_nodes)
        return FakeNodes(self, (self.all_nodes[f] for f in fqdns))


NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud(
        NODES,
        services={
            "memcached": ["n1", "n2", "n3"],
            "mysql": ["n4"],
            "redis": ["n2", "n5"],
            "ghost": [],
        },
        containers={"web": ["n3", "n4"]},
    )


def only_call(cloud: FakeCloud) -> Call:
    assert len(cloud.calls) == 1, cloud.calls
    return cloud.calls[0]


# --------------------------------------------------------------------------- human_api: services


def test_service_without_on_passes_no_nodes(cloud: FakeCloud) -> None:
    result = human_api(cloud, "restart memcached service")
    call = only_call(cloud)
    assert call == Call("memcached", "restart", None, {"sec": None})
    assert result == FakeResult(call)
    assert cloud.picks == []


def test_service_on_all_nodes_passes_no_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "terminate redis service on all nodes")
    assert only_call(cloud) == Call("redis", "terminate", None, {"sec": None})


def test_service_on_one_node_picks_among_the_service_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "kill memcached service on one node")
    call = only_call(cloud)
    assert call.action == "kill"
    assert call.nodes is not None
    assert len(call.nodes) == 1
    assert set(call.nodes) <= {"n1", "n2", "n3"}
    assert cloud.picks == [(("n1", "n2", "n3"), 1)]


def test_service_on_one_node_when_it_runs_on_one_node(cloud: FakeCloud) -> None:
    human_api(cloud, "kill mysql service on random node")
    assert only_call(cloud).nodes == ("n4",)


def test_service_duration_is_passed_as_sec(cloud: FakeCloud) -> None:
    human_api(cloud, "freeze memcached service on n2 node for 10 seconds")
    assert only_call(cloud) == Call("memcached", "freeze", ("n2",), {"sec": 10})


def test_service_duration_in_minutes(cloud: FakeCloud) -> None:
    human_api(cloud, "freeze memcached service for 2 minutes")
    assert only_call(cloud).kwargs == {"sec": 120}


def test_service_on_named_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "restart memcached service on n3, n1 nodes")
    assert only_call(cloud).nodes == ("n1", "n3")
    assert ("get_nodes", ("n3", "n1")) in cloud.lookups


def test_service_on_a_node_it_does_not_run_on_is_refused(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError) as info:
        human_api(cloud, "kill memcached service on n1, n4 nodes")
    message = str(info.value)
    assert "n4" in message
    assert "memcached service" in message
    assert "'n1, n4 nodes'" in message
    assert cloud.calls == []


def test_service_on_an_unknown_node_propagates(cloud: FakeCloud) -> None:
    with pytest.raises(UnknownNodeError):
        human_api(cloud, "kill memcached service on n9 node")
    assert cloud.calls == []


def test_service_on_count_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "kill memcached service on 2 nodes")
    call = only_call(cloud)
    assert call.nodes is not None
    assert len(call.nodes) == 2
    assert set(call.nodes) <= {"n1", "n2", "n3"}
    assert cloud.picks == [(("n1", "n2", "n3"), 2)]


def test_service_on_too_many_nodes_is_refused_before_acting(cloud: FakeCloud) -> None:
    # redis runs on two nodes; three are asked for: refuse, do not "pick fewer".
    with pytest.raises(NoNodesSelectedError) as info:
        human_api(cloud, "kill redis service on 3 nodes")
    message = str(info.value)
    assert "3" in message
    assert "only 2" in message
    assert "n2, n5" in message
    assert cloud.calls == []
    assert cloud.picks == []


@pytest.mark.parametrize(
    ("sentence", "size"),
    [
        ("kill memcached service on 30% of nodes", 1),  # 0.9 -> 1
        ("kill memcached service on 34% of nodes", 2),  # 1.02 -> 2
        ("kill memcached service on 1% of nodes", 1),
        ("kill memcached service on 66% of nodes", 2),  # 1.98 -> 2
        ("kill memcached service on 67% of nodes", 3),  # 2.01 -> 3
        ("kill memcached service on 100% of nodes", 3),
    ],
)
def test_service_on_percent_of_nodes(cloud: FakeCloud, sentence: str, size: int) -> None:
    human_api(cloud, sentence)
    call = only_call(cloud)
    assert call.nodes is not None
    assert len(call.nodes) == size
    assert set(call.nodes) <= {"n1", "n2", "n3"}
    assert cloud.picks == [(("n1", "n2", "n3"), size)]


def test_percent_of_a_service_running_nowhere_is_refused(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError, match="no nodes running ghost service"):
        human_api(cloud, "kill ghost service on 50% of nodes")
    assert cloud.calls == []


def test_one_node_of_a_service_running_nowhere_is_refused(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError):
        human_api(cloud, "kill ghost service on one node")
    assert cloud.calls == []


def test_unknown_service_propagates_from_the_cloud(cloud: FakeCloud) -> None:
    with pytest.raises(UnknownServiceError) as info:
        human_api(cloud, "kill nosuch service on one node")
    assert info.value.name == "nosuch"
    assert cloud.calls == []


def test_service_name_is_passed_as_written(cloud: FakeCloud) -> None:
    # Names keep their case (os-faults lowercased whole sentences).
    with pytest.raises(UnknownServiceError) as info:
        human_api(cloud, "Restart Memcached service")
    assert info.value.name == "Memcached"


def test_malformed_sentence_touches_nothing(cloud: FakeCloud) -> None:
    with pytest.raises(SentenceError):
        human_api(cloud, "kill memcached servce on one node")
    assert cloud.lookups == []
    assert cloud.calls == []


def test_plug_leaves_direction_to_the_service(cloud: FakeCloud) -> None:
    human_api(cloud, "unplug redis service on n5 node for 30 s")
    assert only_call(cloud) == Call("redis", "unplug", ("n5",), {"sec": 30, "direction": "both"})


# --------------------------------------------------------------------------- human_api: containers


def test_container_on_one_node(cloud: FakeCloud) -> None:
    human_api(cloud, "restart web container on one node")
    call = only_call(cloud)
    assert call.receiver == "web"
    assert call.action == "restart"
    assert call.nodes is not None
    assert len(call.nodes) == 1
    assert set(call.nodes) <= {"n3", "n4"}
    assert ("get_container", "web") in cloud.lookups


def test_container_everywhere(cloud: FakeCloud) -> None:
    human_api(cloud, "terminate web container")
    assert only_call(cloud) == Call("web", "terminate", None, {"sec": None})


def test_container_on_a_node_it_does_not_run_on(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError, match="web container"):
        human_api(cloud, "start web container on n1 node")
    assert cloud.calls == []


def test_unknown_container_propagates(cloud: FakeCloud) -> None:
    with pytest.raises(UnknownContainerError):
        human_api(cloud, "start db container")


# --------------------------------------------------------------------------- human_api: nodes


def test_node_action_on_all_nodes(cloud: FakeCloud) -> None:
    result = human_api(cloud, "poweroff all nodes")
    call = only_call(cloud)
    assert call == Call("nodes", "poweroff", tuple(NODES), {"sec": None})
    assert result == FakeResult(call)


def test_node_action_with_service_uses_the_service_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "reboot nodes with redis service")
    assert only_call(cloud) == Call("nodes", "reboot", ("n2", "n5"), {"sec": None})


def test_one_node_with_service(cloud: FakeCloud) -> None:
    human_api(cloud, "reboot one node with mysql service")
    assert only_call(cloud) == Call("nodes", "reboot", ("n4",), {"sec": None})
    assert cloud.picks == [(("n4",), 1)]


def test_one_node_with_service_picks_among_its_nodes(cloud: FakeCloud) -> None:
    for _ in range(20):
        human_api(cloud, "oom one node with memcached service")
    chosen = {c.nodes for c in cloud.calls}
    assert all(nodes is not None and len(nodes) == 1 for nodes in chosen)
    assert set().union(*(n or () for n in chosen)) <= {"n1", "n2", "n3"}
    assert len(chosen) > 1  # it is a random pick, not always the first node


def test_node_by_fqdn(cloud: FakeCloud) -> None:
    human_api(cloud, "reset n2 node")
    assert only_call(cloud) == Call("nodes", "reset", ("n2",), {"sec": None})
    assert cloud.lookups == [("get_nodes", ("n2",))]


def test_node_by_fqdn_with_service_that_is_not_there(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError) as info:
        human_api(cloud, "reboot n1 node with mysql service")
    assert "n1" in str(info.value)
    assert "mysql service" in str(info.value)
    assert cloud.calls == []


def test_node_by_fqdn_with_service(cloud: FakeCloud) -> None:
    human_api(cloud, "reboot n5 node with redis service")
    assert only_call(cloud).nodes == ("n5",)


def test_count_of_nodes_with_service_too_many(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError, match="only 2 nodes running redis service"):
        human_api(cloud, "reboot 3 nodes with redis service")
    assert cloud.calls == []


def test_count_of_all_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "shutdown 4 nodes")
    call = only_call(cloud)
    assert call.nodes is not None
    assert len(call.nodes) == 4
    assert cloud.picks == [(tuple(NODES), 4)]


def test_percent_of_all_nodes(cloud: FakeCloud) -> None:
    human_api(cloud, "reboot 30% of nodes")  # 1.5 -> 2
    call = only_call(cloud)
    assert call.nodes is not None
    assert len(call.nodes) == 2


def test_node_action_with_unknown_service(cloud: FakeCloud) -> None:
    with pytest.raises(UnknownServiceError):
        human_api(cloud, "reboot one node with nosuch service")
    assert cloud.calls == []


def test_with_service_running_nowhere(cloud: FakeCloud) -> None:
    with pytest.raises(NoNodesSelectedError):
        human_api(cloud, "reboot all nodes with ghost service")
    assert cloud.calls == []


def test_stress(cloud: FakeCloud) -> None:
    human_api(cloud, "stress cpu on one node with mysql service for 30 seconds")
    assert only_call(cloud) == Call("nodes", "stress", ("n4",), {"target": "cpu", "sec": 30})


def test_stress_os_faults_order(cloud: FakeCloud) -> None:
    human_api(cloud, "stress memory for 20 seconds on n1 node")
    assert only_call(cloud) == Call("nodes", "stress", ("n1",), {"target": "memory", "sec": 20})


def test_stress_default_target(cloud: FakeCloud) -> None:
    human_api(cloud, "stress n3 node")
    assert only_call(cloud) == Call("nodes", "stress", ("n3",), {"target": "cpu", "sec": None})


# --------------------------------------------------------------------------- human_api: networks


def test_disconnect_network(cloud: FakeCloud) -> None:
    human_api(cloud, "disconnect management network on one node with mysql service for 20 seconds")
    assert only_call(cloud) == Call(
        "nodes", "disconnect", ("n4",), {"network_name": "management", "sec": 20}
    )


def test_connect_network_passes_no_sec(cloud: FakeCloud) -> None:
    # FakeNodes.connect takes no sec: passing sec=None would raise TypeError.
    human_api(cloud, "connect storage network on n1, n2 nodes")
    assert only_call(cloud) == Call("nodes", "connect", ("n1", "n2"), {"network_name": "storage"})


def test_network_on_nodes_with_service(cloud: FakeCloud) -> None:
    human_api(cloud, "Disconnect management network on nodes with redis service")
    call = only_call(cloud)
    assert call.nodes == ("n2", "n5")
    assert call.kwargs["network_name"] == "management"


# --------------------------------------------------------------------------- sec only when given


class Strict:
    """Objects whose action methods take no sec at all, like os-faults' own."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def get_service(self, name: str) -> Strict:
        return self

    def get_container(self, name: str) -> Strict:
        return self

    def get_nodes(self, fqdns: list[str] | None = None) -> Strict:
        return self

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[FakeNode]:
        return iter([FakeNode("only", "10.0.0.1")])

    def __and__(self, other: Strict) -> Strict:
        return self

    def pick(self, count: int = 1) -> Strict:
        return self

    def restart(self, nodes: Strict | None = None) -> str:
        self.calls.append(("restart", nodes))
        return "restarted"

    def reboot(self) -> str:
        self.calls.append(("reboot", None))
        return "rebooted"


def test_sec_is_passed_only_when_a_duration_is_given() -> None:
    strict = Strict()
    assert human_api(strict, "restart keystone service") == "restarted"
    assert human_api(strict, "restart keystone service on one node") == "restarted"
    assert human_api(strict, "reboot one node with keystone service") == "rebooted"
    assert strict.calls == [("restart", None), ("restart", strict), ("reboot", None)]


# --------------------------------------------------------------------------- prepare


def test_prepare_selects_without_running(cloud: FakeCloud) -> None:
    call = prepare(cloud, "kill memcached service on 2 nodes for 5 s")
    assert cloud.calls == []
    assert call.method == "kill"
    assert call.kwargs["sec"] == 5
    assert call.nodes is not None
    assert len(call.nodes) == 2
    call.run()
    assert only_call(cloud).nodes == tuple(n.fqdn for n in call.nodes)


def test_prepare_accepts_a_parsed_sentence(cloud: FakeCloud) -> None:
    sentence = Sentence(FaultKind.NODE, "reboot", selector=sel("fqdns", None, "n3"))
    human_api(cloud, sentence)
    assert only_call(cloud).nodes == ("n3",)


def test_refusal_names_the_sentence_for_a_built_sentence(cloud: FakeCloud) -> None:
    sentence = Sentence(FaultKind.NODE, "reboot", selector=sel("count", 9))
    with pytest.raises(NoNodesSelectedError, match="9 nodes"):
        human_api(cloud, sentence)


def test_a_ganeti_command_plans_a_ganeti_fault_among_ganeti_objects() -> None:
    """The operator's `command:` turns the object word into a label selector."""
    from faultline.models.resources import FaultInjectionSpec
    from faultline.reconcile.plan import plan

    spec = FaultInjectionSpec.model_validate(
        {"targetRef": {"name": "t"}, "command": "drain ganeti node on one node for 2 minutes"}
    )
    the_plan = plan(spec)
    fault = the_plan.fault
    assert (fault.kind, fault.action, fault.target) == (FaultKind.GANETI, "drain", None)
    assert the_plan.selector.labels == {"ganeti.kind": "node"}
    assert (the_plan.selector.mode, the_plan.selector.value) == ("one", 1)
    assert the_plan.duration == 120

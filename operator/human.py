"""The human API: one English sentence describes one fault.

``human_api(cloud, "kill memcached service on one node")`` parses the sentence, picks the
nodes and calls the matching method of the cloud object, the way os-faults' human API does.
Keywords are case-insensitive; service, container, network and node names keep their case.

Sentence forms (``[...]`` is optional; the clauses after the head - ``on``, ``with``,
``for`` - may come in any order, each at most once)::

    service    <service-action> <name> service [on <where>] [for <duration>]
    container  <container-action> <name> container [on <where>] [for <duration>]
    node       <node-action> [on] <where> [with <name> service] [for <duration>]
    stress     stress [<target>] [on] <where> [with <name> service] [for <duration>]
    network    disconnect|connect <name> network on <where> [with <name> service]
               [for <duration>]
    nova       <nova-action> <binary> service on <where> [for <duration>]
    ganeti     <ganeti-action> ganeti instance|node on <where> [for <duration>]
    power off  poweroff [on] <where> [with <name> service] [and mark it down] [for <duration>]

    service-action    start terminate restart kill freeze unfreeze plug unplug
    container-action  start terminate restart
    node-action       reboot shutdown oom stress poweroff poweron reset
    nova-action       force down, unset force down, disable, enable (through Nova's API)
    ganeti-action     instances: shutdown startup reboot; nodes: drain offline regular
                      (through Ganeti's RAPI)
    target            cpu | memory (or mem) | io (or disk, os-faults' spelling); default cpu

Ganeti sentences pick among the nodes discovered from the cluster as that object (label
``ganeti.kind``): ``shutdown ganeti instance on inst1.example.org node for 5 minutes``,
``drain ganeti node on one node``. A named node that is not such an object is refused.

``and mark it down`` (poweroff only) also forces each node's nova-compute down while the
node is off, as OPNFV Doctor does, and unsets it after the node is powered on again.

Stress names what to load right after the verb, then where and for how long:
``stress cpu on one node for 30 seconds``. os-faults' order, ``stress cpu for 30 seconds on
node-2.local node``, means the same. ``stress one node`` loads the CPU.

``<where>`` picks nodes out of the candidates (see below):

    ==========================================  ===========================================
    words                                       selects
    ==========================================  ===========================================
    ``node`` / ``nodes`` (alone)                all candidates
    ``all nodes``                               all candidates
    ``one``/``random``/``single``/``some node`` one candidate, at random
    ``<N> nodes``                               N candidates at random; fewer is an error
    ``<P>% of nodes``, ``<P> percent of nodes`` ceil(P% of the candidates), at least one
    ``<fqdn> node``, ``node <fqdn>``            that node; an error if it is not a candidate
    ``<fqdn>, <fqdn> and <fqdn> nodes``         exactly those nodes, same rule
    ==========================================  ===========================================

The candidates are the nodes the service or container runs on, or for node and network
sentences every node of the cloud, narrowed by ``with <name> service`` to the nodes that
service runs on. A service or container sentence without ``on`` (or with ``on all nodes``)
passes no nodes, so the service acts wherever it runs, as in os-faults.

``<duration>`` is ``<N> seconds|second|secs|sec|s`` or ``<N> minutes|minute|mins|min|m``, or
the same without the space (``30s``, ``2m``); N is a whole number of at least one. It is passed
to the cloud as ``sec=`` (whole seconds), only when given. ``connect`` takes no duration.

Selection is fail-closed: when the sentence asks for more nodes than there are candidates, or
names a node that is not a candidate, NoNodesSelectedError is raised before any action runs.
A sentence that does not parse raises SentenceError, which points at the offending word and
lists what was expected there. Unknown service, container, network or node names are not
parse errors; they come from the cloud object (UnknownServiceError and friends).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from faultline.models import faults
from faultline.models.errors import NoNodesSelectedError, SentenceError
from faultline.models.faults import GANETI_KIND_LABEL, FaultKind

__all__ = [
    "ACTIONS",
    "STRESS_TARGETS",
    "CloudLike",
    "ContainerLike",
    "NodeCollectionLike",
    "NodeLike",
    "PreparedCall",
    "Selector",
    "SelectorMode",
    "Sentence",
    "ServiceLike",
    "human_api",
    "parse",
    "prepare",
]

LOG = logging.getLogger(__name__)

# --------------------------------------------------------------------------- vocabulary

SERVICE_ACTIONS: Final[tuple[str, ...]] = faults.SERVICE_ACTIONS
CONTAINER_ACTIONS: Final[tuple[str, ...]] = faults.CONTAINER_ACTIONS
NETWORK_ACTIONS: Final[tuple[str, ...]] = faults.NETWORK_ACTIONS
#: The catalog's node actions plus os-faults' power actions.
NODE_ACTIONS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys((*faults.NODE_ACTIONS, "poweroff", "poweron", "reset"))
)
#: Nova verbs as written (first word -> the phrases it starts) and the action they mean.
NOVA_PHRASES: Final[dict[tuple[str, ...], str]] = {
    ("force", "down"): "force-down",
    ("force-down",): "force-down",
    ("unset", "force", "down"): "unset-force-down",
    ("unset", "force-down"): "unset-force-down",
    ("disable",): "disable",
    ("enable",): "enable",
}
NOVA_FIRST_WORDS: Final[tuple[str, ...]] = tuple(dict.fromkeys(p[0] for p in NOVA_PHRASES))
#: Ganeti verbs by the object they act on; the word "ganeti" follows the verb.
GANETI_VERBS: Final[dict[str, tuple[str, ...]]] = {
    "instance": faults.GANETI_INSTANCE_ACTIONS,
    "node": faults.GANETI_NODE_ACTIONS,
}
GANETI_WORD: Final = "ganeti"
#: Every verb a sentence may start with, in the order error messages list them.
ACTIONS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(
        (
            *SERVICE_ACTIONS,
            *CONTAINER_ACTIONS,
            *NODE_ACTIONS,
            *NETWORK_ACTIONS,
            *faults.GANETI_ACTIONS,
            "force down",
            "unset force down",
            "disable",
            "enable",
        )
    )
)
#: The node collection method each Nova action calls.
NOVA_METHODS: Final[dict[str, str]] = {
    "force-down": "force_down",
    "unset-force-down": "unset_force_down",
    "disable": "disable_service",
    "enable": "enable_service",
}
#: A poweroff that also forces the node's nova-compute down: "... and mark it down".
MARK_DOWN_WORDS: Final = ("and", "mark", "it", "down")
#: Sentence kinds whose action is a method of the chosen node collection.
_NODE_RECEIVERS: Final = (FaultKind.NODE, FaultKind.NETWORK, FaultKind.NOVA, FaultKind.GANETI)
#: Actions that take no duration.
NO_DURATION: Final[frozenset[str]] = frozenset({"connect"})

#: Stress target words -> the target passed to ``nodes.stress(target=...)``.
STRESS_TARGETS: Final[dict[str, str]] = {
    "cpu": "cpu",
    "memory": "memory",
    "mem": "memory",
    "io": "io",
    "disk": "io",
}
DEFAULT_STRESS_TARGET: Final = "cpu"

ONE_WORDS: Final = ("one", "random", "single", "some")
ALL_WORD: Final = "all"
NODE_WORDS: Final = ("node", "nodes")
KIND_WORDS: Final = ("service", "container", "network", GANETI_WORD)
CLAUSE_WORDS: Final = ("on", "with", "for")
#: Words that can never be a name.
RESERVED: Final[frozenset[str]] = frozenset(
    (*KIND_WORDS, *CLAUSE_WORDS, *NODE_WORDS, *ONE_WORDS, ALL_WORD, "of", "and", ",")
)

_SECOND_UNITS: Final = ("seconds", "second", "secs", "sec", "s")
_MINUTE_UNITS: Final = ("minutes", "minute", "mins", "min", "m")
_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(_SECOND_UNITS, 1),
    **dict.fromkeys(_MINUTE_UNITS, 60),
}
_TOKEN = re.compile(r",|[^\s,]+")
_NUMBER = re.compile(r"^[0-9]+$")
_PERCENT = re.compile(r"^([0-9]+)%$")
_COMPACT_DURATION = re.compile(r"^([0-9]+)([a-z]+)$")
_FQDN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")

END: Final = "end of sentence"
WHERE_STARTS: Final[tuple[str, ...]] = (
    *ONE_WORDS,
    ALL_WORD,
    "<N>",
    "<P>%",
    "<fqdn>",
    *NODE_WORDS,
)

# --------------------------------------------------------------------------- the parse

SelectorMode = Literal["all", "one", "count", "percent", "fqdns"]


@dataclass(frozen=True)
class Selector:
    """Which of the candidate nodes a sentence picks.

    ``value`` is the count for "one" (1) and "count", the percentage for "percent", and None
    otherwise; ``fqdns`` is set for "fqdns". ``text`` is the phrase as written ("3 nodes"),
    for error messages.
    """

    mode: SelectorMode
    value: int | None = None
    fqdns: tuple[str, ...] = ()
    text: str = field(default="", compare=False)

    def count_of(self, available: int) -> int | None:
        """How many nodes to pick out of `available`; None means all of them."""
        if self.mode == "one":
            return 1
        if self.mode == "count":
            assert self.value is not None
            return self.value
        if self.mode == "percent":
            assert self.value is not None
            # Integer ceiling: float arithmetic would round 3.0000000001 up to 4.
            return max(1, -(-self.value * available // 100))
        if self.mode == "fqdns":
            return len(self.fqdns)
        return None

    def canonical(self) -> str:
        if self.mode == "all":
            return "all nodes"
        if self.mode == "one":
            return "one node"
        if self.mode == "count":
            return f"{self.value} nodes" if self.value != 1 else "1 node"
        if self.mode == "percent":
            return f"{self.value}% of nodes"
        if len(self.fqdns) == 1:
            return f"{self.fqdns[0]} node"
        return f"{', '.join(self.fqdns)} nodes"


@dataclass(frozen=True)
class Sentence:
    """A parsed sentence. ``target`` is the service, container or network name (None for node
    sentences); ``selector`` is None when a service or container sentence has no ``on``."""

    kind: FaultKind
    action: str
    target: str | None = None
    selector: Selector | None = None
    with_service: str | None = None
    duration: int | None = None
    stress_target: str | None = None
    mark_host_down: bool = False
    text: str = field(default="", compare=False)

    @property
    def params(self) -> dict[str, Any]:
        """The keyword arguments of the action besides ``nodes``."""
        params: dict[str, Any] = {}
        if self.kind == FaultKind.NETWORK:
            params["network_name"] = self.target
        if self.kind == FaultKind.NOVA:
            params["binary"] = self.target
        if self.mark_host_down:
            params["mark_host_down"] = True
        if self.stress_target is not None:
            params["target"] = self.stress_target
        if self.duration is not None:
            params["sec"] = self.duration
        return params

    def canonical(self) -> str:
        """The sentence in its normal form; parsing it gives back an equal Sentence."""
        words = [self.action.replace("-", " ")]
        if self.kind == FaultKind.GANETI:
            assert self.selector is not None
            words += [GANETI_WORD, str(self.target), "on", self.selector.canonical()]
        elif self.kind == FaultKind.NODE:
            if self.stress_target is not None:
                words.append(self.stress_target)
            if self.action == "stress":
                words.append("on")
            assert self.selector is not None
            words.append(self.selector.canonical())
        else:
            noun = "service" if self.kind == FaultKind.NOVA else self.kind.value
            words += [str(self.target), noun]
            if self.selector is not None:
                words += ["on", self.selector.canonical()]
        if self.with_service is not None:
            words += ["with", self.with_service, "service"]
        if self.mark_host_down:
            words += list(MARK_DOWN_WORDS)
        if self.duration is not None:
            words += ["for", f"{self.duration} seconds"]
        return " ".join(words)


@dataclass(frozen=True)
class _Token:
    text: str
    start: int

    @property
    def low(self) -> str:
        return self.text.lower()


def _tokenize(sentence: str) -> list[_Token]:
    return [_Token(m.group(), m.start()) for m in _TOKEN.finditer(sentence)]


class _Parser:
    def __init__(self, sentence: str) -> None:
        self.sentence = sentence
        self.tokens = _tokenize(sentence)
        self.i = 0

    # -- cursor helpers

    def peek(self, ahead: int = 0) -> _Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def peek_low(self, ahead: int = 0) -> str | None:
        tok = self.peek(ahead)
        return tok.low if tok is not None else None

    def fail(self, expected: Sequence[str]) -> SentenceError:
        tok = self.peek()
        if tok is None:
            return SentenceError(self.sentence, len(self.sentence.rstrip()), "", expected)
        return SentenceError(self.sentence, tok.start, tok.text, expected)

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, words: Sequence[str], expected: Sequence[str] | None = None) -> _Token:
        if self.peek_low() not in words:
            raise self.fail(expected if expected is not None else words)
        return self.take()

    def name(self, placeholder: str) -> str:
        tok = self.peek()
        if tok is None or tok.low in RESERVED:
            raise self.fail([placeholder])
        return self.take().text

    def span(self, first: int) -> str:
        start = self.tokens[first].start
        last = self.tokens[self.i - 1]
        return self.sentence[start : last.start + len(last.text)]

    # -- grammar

    def nova_action(self) -> str | None:
        """The Nova verb phrase at the cursor (taken), or None when there is none."""
        for phrase, action in sorted(NOVA_PHRASES.items(), key=lambda kv: -len(kv[0])):
            if all(self.peek_low(i) == word for i, word in enumerate(phrase)):
                for _ in phrase:
                    self.take()
                return action
        first = self.peek_low()
        if first in ("force", "unset"):
            self.take()
            raise self.fail(["down"] if first == "force" else ["force down"])
        return None

    def sentence_(self) -> Sentence:
        tok = self.peek()
        if tok is not None and tok.low in NOVA_FIRST_WORDS:
            nova = self.nova_action()
            assert nova is not None
            binary = self.name("<service name>")
            self.expect(["service"])
            return self.clauses(FaultKind.NOVA, nova, binary, None)
        if tok is None or tok.low not in ACTIONS:
            raise self.fail(ACTIONS)
        if tok.low in faults.GANETI_ACTIONS and (
            self.peek_low(1) == GANETI_WORD or tok.low not in (*NODE_ACTIONS, *SERVICE_ACTIONS)
        ):
            return self.ganeti()
        action = self.take().low
        target: str | None = None
        stress_target: str | None = None
        if action in NODE_ACTIONS:
            kind = FaultKind.NODE
            if action == "stress":
                stress_target = self.stress_target()
        else:
            kinds = [
                k.value
                for k, verbs in (
                    (FaultKind.SERVICE, SERVICE_ACTIONS),
                    (FaultKind.CONTAINER, CONTAINER_ACTIONS),
                    (FaultKind.NETWORK, NETWORK_ACTIONS),
                )
                if action in verbs
            ]
            target = self.name(f"<{' or '.join(kinds)} name>")
            kind = FaultKind(self.expect(kinds).low)
        return self.clauses(kind, action, target, stress_target)

    def ganeti(self) -> Sentence:
        action = self.take().low
        self.expect([GANETI_WORD])
        objects = [o for o, verbs in GANETI_VERBS.items() if action in verbs]
        noun = self.expect([*objects, *(f"{o}s" for o in objects)], objects).low
        return self.clauses(FaultKind.GANETI, action, noun.removesuffix("s"), None)

    def stress_target(self) -> str:
        word = self.peek_low()
        if word in STRESS_TARGETS:
            self.take()
            return STRESS_TARGETS[word]
        # "stress gpu on ..." / "stress gpu for ...": a target we do not know, not a node name.
        if word is not None and word not in RESERVED and self.peek_low(1) in ("on", "for"):
            raise self.fail(list(dict.fromkeys(STRESS_TARGETS.values())))
        return DEFAULT_STRESS_TARGET

    def clauses(
        self, kind: FaultKind, action: str, target: str | None, stress_target: str | None
    ) -> Sentence:
        selector: Selector | None = None
        with_service: str | None = None
        duration: int | None = None
        mark_host_down = False
        takes_with = kind in (FaultKind.NODE, FaultKind.NETWORK)
        takes_for = action not in NO_DURATION
        takes_mark = kind == FaultKind.NODE and action == "poweroff"
        where_required = kind in _NODE_RECEIVERS
        while (tok := self.peek()) is not None:
            word = tok.low
            if word == "and" and takes_mark and not mark_host_down and selector is not None:
                for expected_word in MARK_DOWN_WORDS:
                    self.expect(["it", "them"] if expected_word == "it" else [expected_word])
                mark_host_down = True
            elif word == "on" and selector is None:
                self.take()
                selector = self.where()
            elif word == "for" and takes_for and duration is None:
                self.take()
                duration = self.duration()
            elif word == "with" and takes_with and with_service is None:
                self.take()
                with_service = self.name("<service name>")
                self.expect(["service"])
            elif kind == FaultKind.NODE and selector is None and word not in CLAUSE_WORDS:
                selector = self.where()
            else:
                expected: list[str] = []
                if selector is None:
                    expected.append("on")
                    if kind == FaultKind.NODE:
                        expected += WHERE_STARTS
                if takes_with and with_service is None:
                    expected.append("with")
                if takes_for and duration is None:
                    expected.append("for")
                if takes_mark and not mark_host_down and selector is not None:
                    expected.append("and mark it down")
                if selector is not None or not where_required:
                    expected.append(END)
                raise self.fail(expected)
        if selector is None and where_required:
            raise self.fail(["on", *WHERE_STARTS] if kind == FaultKind.NODE else ["on"])
        return Sentence(
            kind=kind,
            action=action,
            target=target,
            selector=selector,
            with_service=with_service,
            duration=duration,
            stress_target=stress_target,
            mark_host_down=mark_host_down,
            text=self.sentence,
        )

    def where(self) -> Selector:
        first = self.i
        tok = self.peek()
        if tok is None:
            raise self.fail(WHERE_STARTS)
        word = tok.low
        mode: SelectorMode
        value: int | None = None
        fqdns: tuple[str, ...] = ()
        if word in NODE_WORDS:
            self.take()
            after = self.peek()
            if after is not None and after.low not in RESERVED and _FQDN.match(after.text):
                fqdns = self.fqdn_list()  # "on node compute1", "on nodes a and b"
                return Selector("fqdns", None, fqdns, self.span(first))
            return Selector("all", text=self.span(first))
        if word == ALL_WORD:
            self.take()
            mode, nouns = "all", ["nodes"]
        elif word in ONE_WORDS:
            self.take()
            mode, value, nouns = "one", 1, ["node"]
        elif (percent := _PERCENT.match(word)) or (
            _NUMBER.match(word) and self.peek_low(1) in ("%", "percent")
        ):
            value = int(percent.group(1) if percent else word)
            if not 1 <= value <= 100:
                raise self.fail(["<P>% with P from 1 to 100"])
            self.take()
            if not percent:
                self.take()
            if self.peek_low() == "of":
                self.take()
                if self.peek_low() == "the":
                    self.take()
                mode, nouns = "percent", ["nodes"]
            else:
                mode, nouns = "percent", ["of", "nodes"]
        elif _NUMBER.match(word):
            value = int(word)
            if value < 1:
                raise self.fail(["<N> of at least 1"])
            self.take()
            mode, nouns = "count", ["nodes"] if value > 1 else ["node"]
        else:
            fqdns = self.fqdn_list()
            mode, nouns = "fqdns", ["nodes"] if len(fqdns) > 1 else ["node"]
        self.expect(NODE_WORDS, nouns)
        return Selector(mode, value, fqdns, self.span(first))

    def fqdn_list(self) -> tuple[str, ...]:
        names: list[str] = []
        while True:
            tok = self.peek()
            if tok is None or tok.low in RESERVED or not _FQDN.match(tok.text):
                raise self.fail(WHERE_STARTS if not names else ["<fqdn>"])
            names.append(self.take().text)
            if self.peek_low() not in (",", "and") or self.peek_low(1) == MARK_DOWN_WORDS[1]:
                return tuple(dict.fromkeys(names))
            self.take()
            if self.peek_low() == "and":  # "a, b, and c"
                self.take()

    def duration(self) -> int:
        tok = self.peek()
        if tok is None:
            raise self.fail(["<N>"])
        compact = _COMPACT_DURATION.match(tok.low)
        if compact and compact.group(2) in _UNITS:
            number, unit_word = compact.group(1), compact.group(2)
            self.take()
        elif _NUMBER.match(tok.low):
            number = tok.low
            self.take()
            unit_word = self.expect(tuple(_UNITS), ["seconds", "minutes"]).low
        else:
            raise self.fail(["<N>"])
        seconds = int(number) * _UNITS[unit_word]
        if seconds < 1:
            raise SentenceError(self.sentence, tok.start, tok.text, ["<N> of at least 1"])
        return seconds


def parse(sentence: str) -> Sentence:
    """Parse a sentence without touching any cloud; raises SentenceError."""
    return _Parser(sentence).sentence_()


# --------------------------------------------------------------------------- the cloud contract


class NodeLike(Protocol):
    @property
    def fqdn(self) -> str: ...


class NodeCollectionLike(Protocol):
    """What human_api needs of a node collection; actions are looked up by name."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[NodeLike]: ...

    def __and__(self, other: Any) -> NodeCollectionLike: ...

    def pick(self, count: int = 1) -> NodeCollectionLike: ...

    def with_labels(self, labels: Mapping[str, str]) -> NodeCollectionLike: ...


class ServiceLike(Protocol):
    """A service; ``start``, ``kill`` ... are looked up by name and called with
    ``nodes=`` (when the sentence selects nodes) and ``sec=`` (when it has a duration)."""

    def get_nodes(self) -> NodeCollectionLike: ...


class ContainerLike(Protocol):
    def get_nodes(self) -> NodeCollectionLike: ...


class CloudLike(Protocol):
    """The cloud object's public calls that human_api makes (faultline.api implements them)."""

    def get_service(self, name: str) -> ServiceLike: ...

    def get_container(self, name: str) -> ContainerLike: ...

    def get_nodes(self, fqdns: list[str] | None = None) -> NodeCollectionLike: ...


# --------------------------------------------------------------------------- execution


@dataclass(frozen=True)
class PreparedCall:
    """The action a sentence resolved to, with its nodes chosen, not yet run."""

    sentence: Sentence
    receiver: Any
    method: str
    kwargs: dict[str, Any]

    @property
    def nodes(self) -> NodeCollectionLike | None:
        """The nodes the action will touch; None means "wherever the service runs"."""
        if self.sentence.kind in _NODE_RECEIVERS:
            chosen: NodeCollectionLike = self.receiver
            return chosen
        nodes: NodeCollectionLike | None = self.kwargs.get("nodes")
        return nodes

    def run(self) -> Any:
        fn: Callable[..., Any] = getattr(self.receiver, self.method)
        return fn(**self.kwargs)


def _fqdns(nodes: NodeCollectionLike) -> list[str]:
    return sorted(node.fqdn for node in nodes)


def _names(fqdns: Sequence[str]) -> str:
    return ", ".join(fqdns) if fqdns else "no nodes"


def _describe(sentence: Sentence, selector: Selector) -> str:
    return f"{selector.text or selector.canonical()!r} in {sentence.text or sentence.canonical()!r}"


def _select(
    cloud: CloudLike,
    sentence: Sentence,
    selector: Selector,
    candidates: NodeCollectionLike | None,
    among: str,
) -> NodeCollectionLike:
    """Pick `selector`'s nodes out of `candidates` (described by `among`), fail-closed.

    `candidates` None means every node of the cloud; only an fqdn selector may pass it.
    """
    phrase = _describe(sentence, selector)
    if selector.mode == "fqdns":
        wanted = list(selector.fqdns)
        requested = cloud.get_nodes(fqdns=wanted)
        found = {fqdn.lower() for fqdn in _fqdns(requested)}
        unknown = [f for f in wanted if f.lower() not in found]
        if unknown:
            raise NoNodesSelectedError(
                f"{phrase}: the cloud has no node(s) {_names(unknown)}; nothing was done"
            )
        if candidates is None:
            return requested
        chosen = requested & candidates
        inside = {fqdn.lower() for fqdn in _fqdns(chosen)}
        outside = [f for f in wanted if f.lower() not in inside]
        if outside:
            raise NoNodesSelectedError(
                f"{phrase}: {_names(outside)} not among the {among} "
                f"({_names(_fqdns(candidates))}); nothing was done"
            )
        return chosen
    assert candidates is not None
    available = len(candidates)
    if available == 0:
        raise NoNodesSelectedError(f"{phrase}: there are no {among}; nothing was done")
    count = selector.count_of(available)
    if count is None:
        return candidates
    if count > available:
        raise NoNodesSelectedError(
            f"{phrase}: asked for {count} node(s) but there are only {available} {among} "
            f"({_names(_fqdns(candidates))}); nothing was done"
        )
    # os-faults calls pick() for "one node"; keep that call for collections modelled on it.
    return candidates.pick() if selector.mode == "one" else candidates.pick(count)


def prepare(cloud: CloudLike, sentence: str | Sentence) -> PreparedCall:
    """Parse the sentence and choose its nodes; nothing is run yet.

    Raises SentenceError, NoNodesSelectedError, or whatever the cloud raises for unknown
    names. Every call makes a fresh random choice.
    """
    parsed = parse(sentence) if isinstance(sentence, str) else sentence
    kwargs: dict[str, Any] = {}
    kind = parsed.kind
    selector = parsed.selector

    if kind in (FaultKind.SERVICE, FaultKind.CONTAINER):
        assert parsed.target is not None
        if kind == FaultKind.SERVICE:
            receiver: Any = cloud.get_service(name=parsed.target)
        else:
            receiver = cloud.get_container(name=parsed.target)
        if selector is not None and selector.mode != "all":
            among = f"nodes running {parsed.target} {kind.value}"
            kwargs["nodes"] = _select(cloud, parsed, selector, receiver.get_nodes(), among)
        kwargs.update(parsed.params)
        return PreparedCall(parsed, receiver, parsed.action, kwargs)

    assert selector is not None
    candidates: NodeCollectionLike | None
    if kind == FaultKind.GANETI:
        among = f"Ganeti {parsed.target}s (label {GANETI_KIND_LABEL}={parsed.target})"
        candidates = cloud.get_nodes().with_labels({GANETI_KIND_LABEL: str(parsed.target)})
        chosen = _select(cloud, parsed, selector, candidates, among)
        return PreparedCall(parsed, chosen, f"ganeti_{parsed.action}", parsed.params)
    if parsed.with_service is not None:
        among = f"nodes running {parsed.with_service} service"
        service_nodes = cloud.get_service(name=parsed.with_service).get_nodes()
        if selector.mode == "fqdns":
            candidates = service_nodes  # _select looks the named nodes up itself
        else:
            candidates = cloud.get_nodes() & service_nodes
    else:
        among = "nodes"
        candidates = None if selector.mode == "fqdns" else cloud.get_nodes()
    chosen = _select(cloud, parsed, selector, candidates, among)
    kwargs.update(parsed.params)
    method = NOVA_METHODS[parsed.action] if kind == FaultKind.NOVA else parsed.action
    return PreparedCall(parsed, chosen, method, kwargs)


def human_api(cloud: CloudLike, sentence: str | Sentence) -> Any:
    """Run one sentence against the cloud and return the action's result.

    ``faultline.human_api(cloud, "freeze memcached service on one node for 10 seconds")``
    """
    call = prepare(cloud, sentence)
    nodes = call.nodes
    LOG.info(
        "human api: %r -> %s(%s) on %s",
        call.sentence.text or call.sentence.canonical(),
        call.method,
        ", ".join(f"{k}={v!r}" for k, v in call.kwargs.items() if k != "nodes"),
        "every node it runs on" if nodes is None else _names(_fqdns(nodes)),
    )
    return call.run()

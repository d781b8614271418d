"""Typed errors. Each says what was wrong and, where there is one, how to fix it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faultline.models.records import ActionResult


class FaultlineError(Exception):
    """Base of every error Faultline raises on purpose."""


class ConfigError(FaultlineError, ValueError):
    """The configuration is invalid; `field` is the dotted path of the offending value.

    It is a ValueError too, so pydantic validators can raise it and keep the field path.
    """

    def __init__(self, field: str, message: str, fix: str = "") -> None:
        self.field = field
        self.message = message
        self.fix = fix
        text = f"{field}: {message}" if field else message
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class UnsafeNameError(ConfigError):
    """A name that ends up in a command on a node is not a plain name."""

    def __init__(self, field: str, value: str, allowed: str) -> None:
        super().__init__(
            field,
            f"{value!r} is not a valid name",
            f"use only {allowed}; names are never passed to a shell unchecked",
        )
        self.value = value


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed) if listed else "none configured"


class UnknownServiceError(FaultlineError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        super().__init__(f"unknown service {name!r}; configured services: {_known(known)}")


class UnknownContainerError(FaultlineError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        super().__init__(f"unknown container {name!r}; configured containers: {_known(known)}")


class UnknownNetworkError(FaultlineError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        super().__init__(
            f"unknown network {name!r}; configured networks: {_known(known)} "
            "(map a name to an interface under `networks`)"
        )


class UnknownNodeError(FaultlineError):
    def __init__(self, names: Iterable[str], known: Iterable[str]) -> None:
        self.names = sorted(names)
        super().__init__(f"unknown node(s) {', '.join(self.names)}; known nodes: {_known(known)}")


class NoNodesSelectedError(FaultlineError):
    """Selection is fail-closed: nothing matched, so nothing is touched."""


class SentenceError(FaultlineError):
    """A human API sentence could not be parsed; points at the word."""

    def __init__(self, sentence: str, position: int, word: str, expected: Iterable[str]) -> None:
        self.sentence = sentence
        self.position = position
        self.word = word
        self.expected = list(expected)
        pointer = " " * position + "^"
        found = f"{word!r}" if word else "end of sentence"
        super().__init__(
            f"cannot parse sentence at {found}; expected {' or '.join(self.expected)}\n"
            f"  {sentence}\n  {pointer}"
        )


class HostKeyError(FaultlineError):
    """The node's SSH host key is unknown or does not match known_hosts."""


class NodeUnreachableError(FaultlineError):
    pass


class ActionError(FaultlineError):
    """An action failed on some nodes; `result` holds every node's outcome."""

    def __init__(self, result: ActionResult) -> None:
        self.result = result
        failed = result.failed
        details = "; ".join(f"{r.fqdn}: {r.error}" for r in failed)
        super().__init__(
            f"{result.action} failed on {len(failed)} of {len(result.nodes)} node(s): {details}"
        )


class UnsupportedActionError(FaultlineError):
    def __init__(self, what: str, action: str, supported: Iterable[str]) -> None:
        super().__init__(f"{what} does not support {action!r}; supported: {_known(supported)}")


def field_path(loc: Iterable[object], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def config_error_from_pydantic(
    errors: Iterable[Mapping[str, object]], prefix: str = ""
) -> ConfigError:
    """Turn pydantic's error list into one ConfigError naming the first bad field."""
    errs = list(errors)
    first = errs[0]
    loc = first.get("loc", ())
    path = field_path(loc if isinstance(loc, tuple) else (), prefix)
    msg = str(first.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    last = path.rsplit(".", 1)[-1]
    if last and msg.startswith(last + ": "):
        msg = msg[len(last) + 2 :]
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    return ConfigError(path or "<root>", msg + more)

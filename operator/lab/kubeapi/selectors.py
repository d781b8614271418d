"""Label and field selectors, parsed the way kube-apiserver accepts them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from faultline.lab.kubeapi import errors

_SET_RE = re.compile(r"\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*")


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.op:
            case "exists":
                return present
            case "!exists":
                return not present
            case "=" | "in":
                return present and labels[self.key] in self.values
            case "!=" | "notin":
                return not present or labels[self.key] not in self.values
        return False  # pragma: no cover


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_labels(text: str | None) -> tuple[Requirement, ...]:
    if not text:
        return ()
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        for op in ("==", "!=", "="):
            if op in part and not re.search(r"\s(in|notin)\s*\(", part):
                key, value = (s.strip() for s in part.split(op, 1))
                if not key:
                    raise errors.bad_request(f"unable to parse requirement: {part!r}")
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", frozenset([value])))
                break
        else:
            m = _SET_RE.fullmatch(part)
            if not m:
                raise errors.bad_request(f"unable to parse requirement: {part!r}")
            neg, key, setop, values = m.groups()
            if setop:
                if neg:
                    raise errors.bad_request(f"unable to parse requirement: {part!r}")
                vals = frozenset(v.strip() for v in values.split(",") if v.strip())
                reqs.append(Requirement(key, setop, vals))
            else:
                reqs.append(Requirement(key, "!exists" if neg else "exists"))
    return tuple(reqs)


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    value: str
    negate: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for step in self.path:
            current = current.get(step) if isinstance(current, Mapping) else None
        if current is None:
            text = ""
        elif isinstance(current, bool):
            text = "true" if current else "false"
        else:
            text = str(current)
        return (text != self.value) if self.negate else (text == self.value)


def parse_fields(text: str | None) -> tuple[FieldRequirement, ...]:
    """Field selectors: ``a.b=v``, ``a.b==v``, ``a.b!=v``, comma-joined (any field path)."""
    if not text:
        return ()
    reqs: list[FieldRequirement] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, value = (s.strip() for s in part.split(op, 1))
                if not key:
                    break
                reqs.append(FieldRequirement(tuple(key.split(".")), value, op == "!="))
                break
        else:
            raise errors.bad_request(f"invalid selector: '{part}'; can't understand '{part}'")
    return tuple(reqs)


@dataclasses.dataclass(frozen=True)
class Selector:
    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None) -> Selector:
        return cls(parse_labels(label_selector), parse_fields(field_selector))

    def __bool__(self) -> bool:
        return bool(self.labels or self.fields)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if self.labels:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if not all(req.matches(labels) for req in self.labels):
                return False
        return all(req.matches(obj) for req in self.fields)

"""Structural openAPIV3Schema handling for custom resources: defaulting, pruning, validation.

A subset of what kube-apiserver does: types, required, enum, bounds, lengths, patterns,
items/properties/additionalProperties, nullable, x-kubernetes-int-or-string and
x-kubernetes-preserve-unknown-fields. CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]
_ROOT_KEEP = {"apiVersion", "kind", "metadata"}


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill ``default`` values of absent properties (recursively, in place, returns value)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = _copy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in list(value):
                if key not in props:
                    value[key] = apply_defaults(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def prune(value: Any, schema: Schema, path: str = "", root: bool = False) -> list[str]:
    """Drop fields unknown to the schema (in place); return the dropped field paths."""
    dropped: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        keep_unknown = _preserves(schema) or extra is True or isinstance(extra, Mapping)
        for key in list(value):
            sub_path = f"{path}.{key}" if path else key
            if root and key in _ROOT_KEEP:
                continue
            if props is not None and key in props:
                dropped += prune(value[key], props[key], sub_path)
            elif isinstance(extra, Mapping):
                dropped += prune(value[key], extra, sub_path)
            elif not keep_unknown and (props is not None or schema.get("type") == "object"):
                del value[key]
                dropped.append(sub_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for n, item in enumerate(value):
            dropped += prune(item, schema["items"], f"{path}[{n}]")
    return dropped


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (dict, list)):
        return _type_name(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def validate(
    value: Any, schema: Schema, path: str = "", root: bool = False
) -> list[tuple[str, str]]:
    """Return (field, message) errors in kube-apiserver's wording."""
    field = path or "<root>"
    errs: list[tuple[str, str]] = []

    def bad(shown: str, detail: str) -> None:
        errs.append((field, f"Invalid value: {shown}: {field} in body {detail}"))

    if value is None:
        if not (schema.get("nullable") or root) and schema.get("type"):
            bad('"null"', f'must be of type {schema["type"]}: "null"')
        return errs

    expected = schema.get("type")
    actual = _type_name(value)
    if schema.get("x-kubernetes-int-or-string"):
        if actual not in ("integer", "string"):
            bad(f'"{actual}"', f'must be of type integer-or-string: "{actual}"')
            return errs
    elif expected and not (expected == actual or (expected == "number" and actual == "integer")):
        bad(f'"{actual}"', f'must be of type {expected}: "{actual}"')
        return errs

    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        errs.append((field, f"Unsupported value: {_show(value)}: supported values: {supported}"))

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and (
            value < low or (schema.get("exclusiveMinimum") is True and value == low)
        ):
            bad(str(value), f"should be greater than or equal to {low}")
        if high is not None and (
            value > high or (schema.get("exclusiveMaximum") is True and value == high)
        ):
            bad(str(value), f"should be less than or equal to {high}")

    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(f'"{value}"', f"should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append((field, f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            bad(f'"{value}"', f"should match '{schema['pattern']}'")

    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            bad(str(len(value)), f"should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(
                (field, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
            )
        items = schema.get("items")
        if isinstance(items, Mapping):
            for n, item in enumerate(value):
                errs += validate(item, items, f"{path}[{n}]")

    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required") or ():
            nullable = (props.get(key) or {}).get("nullable")
            if key not in value or (value[key] is None and not nullable):
                errs.append((f"{path}.{key}" if path else key, "Required value"))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            bad(str(len(value)), f"should have at least {schema['minProperties']} properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                continue
            sub = props.get(key)
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is not None:
                errs += validate(item, sub, f"{path}.{key}" if path else key)
    return errs

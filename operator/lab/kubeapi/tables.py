"""Server-side ``meta.k8s.io/v1 Table`` rendering, as kubectl requests it for ``kubectl get``."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from faultline.lab.kubeapi.registry import ResourceDef

_STEP = re.compile(
    r"\.([A-Za-z0-9_$-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]|\['([^']+)'\]"
)


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in (accept or "")


def jsonpath(obj: Any, path: str) -> Any:
    """A small subset of JSONPath, as used by additionalPrinterColumns."""
    current = obj
    position = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while position < len(path):
        m = _STEP.match(path, position)
        if not m:
            return None
        position = m.end()
        key, index, filter_key, filter_value, quoted = m.groups()
        if key is not None or quoted is not None:
            current = (
                current.get(key if key is not None else quoted)
                if isinstance(current, Mapping)
                else None
            )
        elif index is not None:
            current = (
                current[int(index)]
                if isinstance(current, list) and int(index) < len(current)
                else None
            )
        else:
            matches = [
                item
                for item in (current if isinstance(current, list) else ())
                if str(jsonpath(item, "." + filter_key)) == filter_value
            ]
            current = matches[0] if matches else None
        if current is None:
            return None
    return current


def _age(timestamp: str | None, now: datetime.datetime) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cell(value: Any, type_: str, now: datetime.datetime) -> Any:
    if value is None:
        return None
    if type_ == "date":
        return _age(value if isinstance(value, str) else None, now)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def to_table(
    rd: ResourceDef,
    version: str,
    objects: Iterable[Mapping[str, Any]],
    list_meta: Mapping[str, Any] | None = None,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    extra = list(rd.printer_columns.get(version) or ())
    columns: list[dict[str, Any]] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        },
    ]
    has_age = any((c.get("jsonPath") or "") == ".metadata.creationTimestamp" for c in extra)
    for column in extra:
        columns.append(
            {
                "name": column.get("name", ""),
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "priority": column.get("priority", 0),
                "description": column.get("description", ""),
            }
        )
    if not has_age:
        columns.append(
            {
                "name": "Age",
                "type": "date",
                "format": "",
                "priority": 0,
                "description": "CreationTimestamp of the object.",
            }
        )
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        cells: list[Any] = [meta.get("name")]
        for column in extra:
            cells.append(
                _cell(jsonpath(obj, column.get("jsonPath", "")), column.get("type", "string"), now)
            )
        if not has_age:
            cells.append(_age(meta.get("creationTimestamp"), now))
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_meta or {}),
        "columnDefinitions": columns,
        "rows": rows,
    }

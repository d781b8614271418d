"""Patch flavours of the Kubernetes API, applied to plain JSON-like dicts.

All functions return new structures and never mutate their inputs (stored object versions
are shared with watch events and must stay immutable).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch  # type: ignore[import-untyped, unused-ignore]
import jsonpointer  # type: ignore[import-untyped, unused-ignore]
import yaml

from faultline.lab.kubeapi import errors

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


def deep_copy(value: Any) -> Any:
    """A fast deep copy for JSON-like data (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, Mapping):
        return deep_copy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Lists of dicts that the strategic merge patch merges by a key (a subset of the built-in
# types' patchMergeKey markers; enough for Deployments, Pods, Services and their friends).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "tolerations": "key",
    "hostAliases": "ip",
    "ownerReferences": "uid",
}
_SET_LISTS = {"finalizers"}  # merged as sets (patchStrategy: merge, primitive items)


def strategic_merge_patch(target: Any, patch: Any, field: str | None = None) -> Any:
    """An approximation of the strategic merge patch for JSON-like data.

    Known lists of dicts merge by their merge key; ``finalizers`` merge as a set; ``$patch:
    replace|delete`` and ``$deleteFromPrimitiveList/<field>`` directives are honoured. Everything
    else behaves like a JSON merge patch (which is what kube-apiserver does for custom resources,
    where it refuses strategic patches anyway -- see the server).
    """
    if not isinstance(patch, Mapping):
        if isinstance(patch, list) and isinstance(target, list) and field is not None:
            return _merge_list(target, patch, field)
        return deep_copy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: deep_copy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge_patch(result.get(key), value, key)
        if merged is None and isinstance(value, Mapping) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = merged
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [item for item in result[name] if item not in value]
    return result


def _merge_list(target: list[Any], patch: list[Any], field: str) -> list[Any]:
    if field in _SET_LISTS:
        merged = list(target)
        for item in patch:
            if item not in merged:
                merged.append(item)
        return merged
    key = _MERGE_KEYS.get(field)
    if key is None or not all(isinstance(i, Mapping) for i in [*target, *patch]):
        return list(deep_copy(patch))
    result = [dict(item) for item in target]
    for item in patch:
        index = next((n for n, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(deep_copy(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def json_patch(target: Mapping[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch; any failure (incl. a failed ``test``) is 422 as in Kubernetes."""
    if not isinstance(ops, list):
        raise errors.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(dict(target)), ops, in_place=True)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise errors.unprocessable(
            f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
    ) as exc:
        raise errors.unprocessable(
            f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    if not isinstance(result, dict):
        raise errors.unprocessable("the patch does not produce an object")
    return result


def parse_body(body: bytes, content_type: str) -> Any:
    """Decode a request body (JSON, or YAML for apply patches)."""
    if not body:
        return None
    try:
        if content_type.startswith(APPLY_PATCH) or content_type.endswith("yaml"):
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from exc

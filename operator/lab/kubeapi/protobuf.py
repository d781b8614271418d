"""Decode the few protobuf-encoded bodies kubectl's typed commands send.

``kubectl create namespace|configmap|secret|serviceaccount`` encode their objects as
Kubernetes protobuf (``application/vnd.kubernetes.protobuf``) and do not fall back to JSON.
This decodes those kinds (field numbers as in the upstream ``generated.proto`` files) into
the JSON form the emulator stores. Anything else is refused with 415, as before.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"

# Field number -> (json name, kind); kinds: "str", "bytes", "int", "bool", "time",
# "map", "bmap" (string->bytes), "strs" (repeated string), "msg:T", "msgs:T" (repeated).
Schema = dict[int, tuple[str, str]]
SCHEMAS: dict[str, Schema] = {
    "ObjectMeta": {
        1: ("name", "str"),
        2: ("generateName", "str"),
        3: ("namespace", "str"),
        5: ("uid", "str"),
        6: ("resourceVersion", "str"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "msgs:OwnerReference"),
        14: ("finalizers", "strs"),
    },
    "OwnerReference": {
        1: ("kind", "str"),
        3: ("name", "str"),
        4: ("uid", "str"),
        5: ("apiVersion", "str"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "ObjectReference": {
        1: ("kind", "str"),
        2: ("namespace", "str"),
        3: ("name", "str"),
        4: ("uid", "str"),
        5: ("apiVersion", "str"),
    },
    "LocalObjectReference": {1: ("name", "str")},
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "bmap"),
        3: ("type", "str"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "Namespace": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("spec", "msg:NamespaceSpec"),
    },
    "NamespaceSpec": {1: ("finalizers", "strs")},
    "ServiceAccount": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("secrets", "msgs:ObjectReference"),
        3: ("imagePullSecrets", "msgs:LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool"),
    },
    "Unknown": {},  # handled in decode()
}
SUPPORTED_KINDS = ("ConfigMap", "Secret", "Namespace", "ServiceAccount")


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _message(data: bytes, type_name: str) -> dict[str, Any]:
    schema = SCHEMAS[type_name]
    result: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "str" and isinstance(value, bytes):
            if value:
                result[name] = value.decode()
        elif kind == "int" and isinstance(value, int):
            if value:
                result[name] = value
        elif kind == "bool" and isinstance(value, int):
            result[name] = bool(value)
        elif kind == "strs" and isinstance(value, bytes):
            result.setdefault(name, []).append(value.decode())
        elif kind in ("map", "bmap") and isinstance(value, bytes):
            entry = dict(_fields(value))
            key = entry.get(1, b"")
            item = entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(item, bytes):
                text = base64.b64encode(item).decode() if kind == "bmap" else item.decode()
                result.setdefault(name, {})[key.decode()] = text
        elif kind == "time" and isinstance(value, bytes):
            parts = dict(_fields(value))
            seconds = parts.get(1, 0)
            if isinstance(seconds, int) and seconds:
                moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
                result[name] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind.startswith("msg:") and isinstance(value, bytes):
            result[name] = _message(value, kind[4:])
        elif kind.startswith("msgs:") and isinstance(value, bytes):
            result.setdefault(name, []).append(_message(value, kind[5:]))
    return result


def decode(body: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\0``-prefixed protobuf envelope of a supported kind into a JSON object."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf envelope")
    envelope = dict(_fields(body[len(MAGIC) :]))
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ProtobufError("malformed envelope")
    meta = {n: v.decode() for n, v in _fields(type_meta) if isinstance(v, bytes)}
    api_version, kind = meta.get(1, ""), meta.get(2, "")
    if api_version != "v1" or kind not in SUPPORTED_KINDS:
        raise ProtobufError(f"protobuf bodies of {api_version}/{kind} are not supported")
    obj = _message(raw, kind)
    return {"apiVersion": api_version, "kind": kind, **obj}

"""The stateful part of the emulated API: objects, versions, watches, finalizers, GC.

Objects live in KMock's :class:`kmock.ObjectsArray` (so tests can use KMock's assertions and
version history on ``emulator.objects``), keyed by the resource's storage version. Everything
here runs on the emulator's event loop and never awaits in the middle of a change, so each
write is atomic without locks; every committed change gets the next cluster-wide
resourceVersion and exactly one watch event.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime
import itertools
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kmock

from faultline.lab.kubeapi import errors, schema
from faultline.lab.kubeapi.patches import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    deep_copy,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from faultline.lab.kubeapi.registry import (
    CRD_GROUP,
    CRD_PLURAL,
    Registry,
    ResourceDef,
    resource_from_crd,
)
from faultline.lab.kubeapi.selectors import Selector

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
RKey = tuple[str, str]  # (group, plural)
NsName = tuple[str | None, str]

NAMESPACE_FINALIZER = "kubernetes"
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as in apiserver's generateName
_NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
_DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rkey(rd: ResourceDef) -> RKey:
    return (rd.group, rd.plural)


class WatchEvent:
    """One committed change; serialized lazily, at most once per (type, apiVersion)."""

    __slots__ = ("_encoded", "monotonic", "obj", "old", "rd", "rv", "type")

    def __init__(self, rv: int, type_: str, rd: ResourceDef, obj: Obj, old: Obj | None) -> None:
        self.rv = rv
        self.type = type_
        self.rd = rd
        self.obj = obj
        self.old = old
        self.monotonic = time.monotonic()
        self._encoded: dict[tuple[str, str], bytes] = {}

    def encode(self, type_: str, api_version: str) -> bytes:
        cached = self._encoded.get((type_, api_version))
        if cached is None:
            obj = self.obj
            if obj.get("apiVersion") != api_version:
                obj = dict(obj, apiVersion=api_version)
            cached = (
                json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"
            )
            self._encoded[(type_, api_version)] = cached
        return cached


class Watcher:
    """A live subscription of one watch request to changes of one resource."""

    def __init__(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str | None,
        selector: Selector,
        max_queue: int,
    ) -> None:
        self.rd = rd
        self.namespace = namespace
        self.name = name
        self.selector = selector
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()  # None: the server stops
        self.max_queue = max_queue
        self.overflowed = False

    def offer(self, event: WatchEvent) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.max_queue:
            self.overflowed = True  # a slow consumer: its stream ends with 410 Gone
            return
        self.queue.put_nowait(event)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        return not self.selector or self.selector.matches(obj)

    def translate(self, event: WatchEvent) -> str | None:
        """The event type as seen through this watcher's filters (None to skip)."""
        new_ok = self.matches(event.obj)
        if event.type == "DELETED":
            return (
                "DELETED" if new_ok or (event.old is not None and self.matches(event.old)) else None
            )
        old_ok = event.old is not None and self.matches(event.old)
        if event.type == "ADDED":
            return "ADDED" if new_ok else None
        if new_ok and old_ok:
            return "MODIFIED"
        if new_ok:
            return "ADDED"
        if old_ok:
            return "DELETED"
        return None


class Store:
    """Objects and their lifecycle. All methods must be called on the owning event loop."""

    def __init__(
        self,
        objects: kmock.ObjectsArray,
        registry: Registry,
        *,
        history_limit: int = 3,
        tombstone_limit: int = 1000,
        event_window: int = 10000,
        watch_queue_limit: int = 100000,
        gc_delay: float = 0.0,
        on_resources_changed: Callable[[], None] | None = None,
    ) -> None:
        self.objects = objects
        self.registry = registry
        self.history_limit = max(1, history_limit)
        self.tombstone_limit = tombstone_limit
        self.watch_queue_limit = watch_queue_limit
        self.gc_delay = gc_delay
        self.on_resources_changed = on_resources_changed
        self.rv = 0
        self.events: collections.deque[WatchEvent] = collections.deque(maxlen=event_window)
        self._live: dict[RKey, dict[NsName, tuple[kmock.resource, str | None, str]]] = {}
        self._storage: dict[RKey, kmock.resource] = {}
        self._uids: dict[str, tuple[RKey, str | None, str]] = {}
        self._dependents: dict[str, set[tuple[RKey, str | None, str]]] = {}
        self._ns_counts: collections.Counter[str] = collections.Counter()
        self._tombstones: collections.deque[tuple[kmock.resource, str | None, str]] = (
            collections.deque()
        )
        self._watchers: dict[RKey, set[Watcher]] = {}
        self._gc_queue: asyncio.Queue[tuple[str, str]] | None = None
        self._gc_task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start background controllers (GC); call from within the running loop."""
        self._gc_queue = asyncio.Queue()
        self._gc_task = asyncio.get_running_loop().create_task(self._gc_loop(), name="kubeapi-gc")
        for name in _DEFAULT_NAMESPACES:
            ns_rd = self.registry.get("", "namespaces")
            assert ns_rd is not None
            if self.get(ns_rd, None, name) is None:
                self.create(ns_rd, None, {"metadata": {"name": name}})

    async def stop(self) -> None:
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
            self._gc_task = None

    # ---------------------------------------------------------------- reading

    def _key(
        self, rd: ResourceDef, namespace: str | None, name: str
    ) -> tuple[kmock.resource, str | None, str]:
        res = self._storage.get(_rkey(rd))
        if res is None:
            res = self._storage[_rkey(rd)] = kmock.resource(rd.group, rd.storage_version, rd.plural)
        return (res, namespace if rd.namespaced else None, name)

    def get(self, rd: ResourceDef, namespace: str | None, name: str) -> Obj | None:
        key = self._live.get(_rkey(rd), {}).get((namespace if rd.namespaced else None, name))
        if key is None:
            return None
        return self.objects[key].last.raw

    def require(self, rd: ResourceDef, namespace: str | None, name: str) -> Obj:
        obj = self.get(rd, namespace, name)
        if obj is None:
            raise errors.not_found(rd.plural, rd.group, name)
        return obj

    def iter_objects(self, rd: ResourceDef, namespace: str | None = None) -> Iterator[Obj]:
        live = self._live.get(_rkey(rd), {})
        for (ns, _name), key in sorted(live.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            if namespace is None or ns == namespace:
                yield self.objects[key].last.raw

    def count(self, rd: ResourceDef | None = None) -> int:
        if rd is None:
            return sum(len(v) for v in self._live.values())
        return len(self._live.get(_rkey(rd), {}))

    def list_objects(
        self,
        rd: ResourceDef,
        namespace: str | None,
        selector: Selector,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[list[Obj], str, str | None, int | None]:
        """Return (items, resourceVersion, continue, remainingItemCount)."""
        start: tuple[str, str] | None = None
        list_rv = self.rv
        if continue_token:
            try:
                data = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (data["ns"], data["name"])
                list_rv = int(data["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion"
                ) from exc
        items: list[Obj] = []
        next_token: str | None = None
        remaining: int | None = None
        matched = (
            obj for obj in self.iter_objects(rd, namespace) if not selector or selector.matches(obj)
        )
        for obj in matched:
            meta = obj["metadata"]
            position = (meta.get("namespace") or "", meta["name"])
            if start is not None and position <= start:
                continue
            if limit and len(items) >= limit:
                last = items[-1]["metadata"]
                token = {"rv": list_rv, "ns": last.get("namespace") or "", "name": last["name"]}
                next_token = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
                remaining = 1 + sum(1 for _ in matched)
                break
            items.append(obj)
        return items, str(list_rv), next_token, remaining

    # ---------------------------------------------------------------- committing

    def _commit(self, rd: ResourceDef, new: Obj, old: Obj | None) -> Obj:
        self.rv += 1
        meta = new["metadata"] = dict(new["metadata"])
        meta["resourceVersion"] = str(self.rv)
        namespace = meta.get("namespace") if rd.namespaced else None
        name = meta["name"]
        key = self._key(rd, namespace, name)
        if key in self.objects:
            entry = self.objects[key]
            if entry.deleted:
                entry.create(new)
                self._forget_tombstone(key)
            else:
                entry.history.append(new)
            if len(entry.history) > self.history_limit:
                del entry.history[: -self.history_limit]
        else:
            self.objects[key] = new
        self._live.setdefault(_rkey(rd), {})[(namespace, name)] = key
        uid = meta["uid"]
        self._uids[uid] = (_rkey(rd), namespace, name)
        if old is None and namespace is not None:
            self._ns_counts[namespace] += 1
        self._index_owners(rd, namespace, name, old, new)
        self._publish(WatchEvent(self.rv, "ADDED" if old is None else "MODIFIED", rd, new, old))
        return new

    def _remove(self, rd: ResourceDef, old: Obj) -> Obj:
        self.rv += 1
        final = dict(old)
        final["metadata"] = dict(old["metadata"], resourceVersion=str(self.rv))
        meta = final["metadata"]
        namespace = meta.get("namespace") if rd.namespaced else None
        name = meta["name"]
        key = self._key(rd, namespace, name)
        entry = self.objects[key]
        entry.delete()
        if len(entry.history) > self.history_limit:
            del entry.history[: -self.history_limit]
        self._tombstones.append(key)
        while len(self._tombstones) > self.tombstone_limit:
            stale = self._tombstones.popleft()
            if stale in self.objects and self.objects[stale].deleted:
                del self.objects[stale]
        self._live.get(_rkey(rd), {}).pop((namespace, name), None)
        self._uids.pop(meta["uid"], None)
        if namespace is not None:
            self._ns_counts[namespace] -= 1
            if self._ns_counts[namespace] <= 0:
                del self._ns_counts[namespace]
        self._index_owners(rd, namespace, name, old, None)
        self._publish(WatchEvent(self.rv, "DELETED", rd, final, old))
        self._after_removal(rd, final)
        return final

    def _forget_tombstone(self, key: tuple[kmock.resource, str | None, str]) -> None:
        with contextlib.suppress(ValueError):
            self._tombstones.remove(key)

    def _index_owners(
        self, rd: ResourceDef, namespace: str | None, name: str, old: Obj | None, new: Obj | None
    ) -> None:
        ref = (_rkey(rd), namespace, name)
        old_owners = {
            o.get("uid") for o in (old or {}).get("metadata", {}).get("ownerReferences") or ()
        }
        new_owners = {
            o.get("uid") for o in (new or {}).get("metadata", {}).get("ownerReferences") or ()
        }
        for uid in old_owners - new_owners:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self._dependents[uid]
        for uid in new_owners - old_owners:
            if isinstance(uid, str):
                self._dependents.setdefault(uid, set()).add(ref)
                if uid not in self._uids:  # the owner is already gone: collect this one too
                    self._schedule_gc("owner-gone", uid)

    def _publish(self, event: WatchEvent) -> None:
        self.events.append(event)
        for watcher in self._watchers.get(_rkey(event.rd), ()):
            watcher.offer(event)

    # ---------------------------------------------------------------- watching

    def subscribe(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str | None,
        selector: Selector,
        since: int | None,
    ) -> tuple[Watcher, list[WatchEvent]]:
        """Register a watcher; with ``since``, also return the retained events after it."""
        backlog: list[WatchEvent] = []
        if since is not None and since < self.rv:
            oldest = self.events[0].rv if self.events else self.rv + 1
            if since < oldest - 1:
                raise errors.gone(f"too old resource version: {since} ({oldest - 1})")
            skip = since + 1 - oldest
            backlog = [
                ev
                for ev in itertools.islice(self.events, max(skip, 0), None)
                if ev.rd.group == rd.group and ev.rd.plural == rd.plural
            ]
        watcher = Watcher(
            rd, namespace if rd.namespaced else None, name, selector, self.watch_queue_limit
        )
        self._watchers.setdefault(_rkey(rd), set()).add(watcher)
        return watcher, backlog

    def unsubscribe(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(_rkey(watcher.rd))
        if watchers is not None:
            watchers.discard(watcher)

    def close_watchers(self) -> None:
        """Ask all watch streams to end cleanly (on server shutdown)."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(None)

    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._watchers.values())

    # ---------------------------------------------------------------- preparing objects

    def _check_kind(self, rd: ResourceDef, body: Obj) -> None:
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if kind and kind != rd.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rd.kind})"
            )
        if api_version:
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            version = api_version.rsplit("/", 1)[-1]
            if group != rd.group or version not in rd.versions:
                raise errors.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected "
                    f"API version ({rd.api_version()})"
                )

    def _validate_meta(self, rd: ResourceDef, obj: Obj) -> list[tuple[str, str]]:
        meta = obj["metadata"]
        causes: list[tuple[str, str]] = []
        name = meta.get("name") or ""
        problem = rd.validate_name(name)
        if problem:
            causes.append(("metadata.name", problem))
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is None:
                continue
            if not isinstance(value, dict):
                causes.append((f"metadata.{field}", "Invalid value: must be a map of strings"))
                continue
            for k, v in value.items():
                if not isinstance(v, str):
                    causes.append(
                        (f"metadata.{field}", f"Invalid value: {k!r}: values must be strings")
                    )
                elif field == "labels" and (len(v) > 63 or (v and not _label_value_ok(v))):
                    causes.append(
                        (
                            "metadata.labels",
                            f'Invalid value: "{v}": a valid label must be an '
                            "empty string or consist of alphanumeric characters, '-', '_' or '.'",
                        )
                    )
        finalizers = meta.get("finalizers")
        if finalizers is not None and (
            not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
        ):
            causes.append(("metadata.finalizers", "Invalid value: must be a list of strings"))
        for n, ref in enumerate(meta.get("ownerReferences") or ()):
            if not isinstance(ref, dict):
                causes.append(
                    (f"metadata.ownerReferences[{n}]", "Invalid value: must be an object")
                )
                continue
            for field in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(field):
                    causes.append((f"metadata.ownerReferences[{n}].{field}", "Required value"))
        return causes

    def _apply_schema(
        self,
        rd: ResourceDef,
        obj: Obj,
        version: str | None,
        field_validation: str | None,
        warnings: list[str],
    ) -> None:
        sch = rd.schemas.get(version or rd.storage_version) if rd.schemas else None
        if not sch:
            return
        dropped = schema.prune(obj, sch, root=True)
        if dropped:
            if field_validation == "Strict":
                raise errors.bad_request(
                    "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in dropped)
                )
            if field_validation == "Warn":
                warnings.extend(f'unknown field "{f}"' for f in dropped)
        schema.apply_defaults(obj, sch)
        causes = schema.validate(obj, sch, root=True)
        if causes:
            raise errors.invalid(rd.kind, rd.group, obj["metadata"].get("name", ""), causes)

    def _namespace_ready(self, rd: ResourceDef, namespace: str | None, creating: bool) -> None:
        if not rd.namespaced:
            return
        if not namespace:
            raise errors.bad_request(
                "the server could not find the requested resource: a namespace is required"
            )
        ns_rd = self.registry.get("", "namespaces")
        assert ns_rd is not None
        ns = self.get(ns_rd, None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f'{rd.plural} "{namespace}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated"
            )

    # ---------------------------------------------------------------- create

    def create(
        self,
        rd: ResourceDef,
        namespace: str | None,
        body: Any,
        *,
        version: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
        warnings: list[str] | None = None,
    ) -> Obj:
        warnings = warnings if warnings is not None else []
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        self._check_kind(rd, body)
        obj: Obj = deep_copy(body)
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
        obj["apiVersion"] = rd.api_version(rd.storage_version)
        obj["kind"] = rd.kind
        if rd.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise errors.bad_request(_NAMESPACE_MISMATCH)
            namespace = namespace or body_ns
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
            namespace = None
        self._namespace_ready(rd, namespace, creating=True)
        if rd.status_subresource and not (rd.group == "" and rd.plural == "namespaces"):
            obj.pop("status", None)
        for field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ):
            meta.pop(field, None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.invalid(
                    rd.kind,
                    rd.group,
                    "",
                    [("metadata.name", "Required value: name or generateName is required")],
                )
            for _ in range(10):
                name = prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
                if self.get(rd, namespace, name) is None:
                    break
            meta["name"] = name
        name = meta["name"]
        causes = self._validate_meta(rd, obj)
        if causes:
            raise errors.invalid(rd.kind, rd.group, name, causes)
        self._apply_schema(rd, obj, version, field_validation, warnings)
        self._before_create(rd, obj)
        if self.get(rd, namespace, name) is not None:
            raise errors.already_exists(rd.plural, rd.group, name)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if rd.generation:
            meta["generation"] = 1
        if dry_run:
            return obj
        created = self._commit(rd, obj, None)
        self._after_write(rd, created, None)
        return created

    # ---------------------------------------------------------------- update / patch

    def replace(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        version: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
        warnings: list[str] | None = None,
    ) -> Obj:
        """PUT: a full replacement (of the object or of its status)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        old = self.require(rd, namespace, name)
        self._check_kind(rd, body)
        body_meta = body.get("metadata") or {}
        if body_meta.get("name") and body_meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({body_meta['name']}) does not match "
                f"the name on the URL ({name})"
            )
        if rd.namespaced and body_meta.get("namespace") and body_meta["namespace"] != namespace:
            raise errors.bad_request(_NAMESPACE_MISMATCH)
        rv = body_meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rd.plural, rd.group, name)
        return self._update(
            rd,
            old,
            deep_copy(body),
            subresource=subresource,
            version=version,
            dry_run=dry_run,
            field_validation=field_validation,
            warnings=warnings,
        )

    def patch(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        version: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
        field_manager: str | None = None,
        warnings: list[str] | None = None,
    ) -> tuple[Obj, bool]:
        """PATCH in any of the four flavours; returns (object, created)."""
        old = self.get(rd, namespace, name)
        if patch_type == APPLY_PATCH:
            if not field_manager:
                raise errors.bad_request("PATCH /apply requires fieldManager")
            if not isinstance(body, dict):
                raise errors.bad_request("the apply configuration must be an object")
            if old is None:
                if subresource:
                    raise errors.not_found(rd.plural, rd.group, name)
                obj = deep_copy(body)
                obj.setdefault("metadata", {})["name"] = name
                return self.create(
                    rd,
                    namespace,
                    obj,
                    version=version,
                    dry_run=dry_run,
                    field_validation=field_validation,
                    warnings=warnings,
                ), True
        if old is None:
            raise errors.not_found(rd.plural, rd.group, name)
        if patch_type == JSON_PATCH:
            new = json_patch(old, body)
        else:
            if not isinstance(body, dict):
                raise errors.bad_request("the patch must be a JSON object")
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rd.plural, rd.group, name)
            if patch_type == STRATEGIC_PATCH and not rd.crd_name:
                new = strategic_merge_patch(old, body)
            elif patch_type in (MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH):
                new = merge_patch(old, body)
            else:
                raise errors.unsupported_media_type(patch_type)
        if not isinstance(new, dict):
            raise errors.unprocessable("the patch does not produce an object")
        new = deep_copy(new) if patch_type != JSON_PATCH else new
        return self._update(
            rd,
            old,
            new,
            subresource=subresource,
            version=version,
            dry_run=dry_run,
            field_validation=field_validation,
            warnings=warnings,
        ), False

    def _update(
        self,
        rd: ResourceDef,
        old: Obj,
        new: Obj,
        *,
        subresource: str | None,
        version: str | None,
        dry_run: bool,
        field_validation: str | None,
        warnings: list[str] | None,
    ) -> Obj:
        warnings = warnings if warnings is not None else []
        old_meta = old["metadata"]
        if subresource == "status":
            if not rd.status_subresource:
                raise errors.resource_not_found()
            candidate = dict(old)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
            new = deep_copy(candidate)
        elif subresource is not None:
            raise errors.method_not_allowed(f"subresource {subresource!r} cannot be written")
        else:
            if rd.status_subresource:
                if "status" in old:
                    new["status"] = deep_copy(old["status"])
                else:
                    new.pop("status", None)
        meta = new["metadata"] = dict(new.get("metadata") or {})
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        causes = self._validate_meta(rd, new)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                causes.append(
                    (
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the "
                        f"object is being deleted, found new finalizers {sorted(added)!r}",
                    )
                )
        if causes:
            raise errors.invalid(rd.kind, rd.group, old_meta["name"], causes)
        self._apply_schema(rd, new, version, field_validation, warnings)
        self._before_update(rd, new, old)
        if rd.generation and _spec_of(rd, new) != _spec_of(rd, old):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if new == old:  # a no-op write: no new resourceVersion, no watch event
            return old
        if dry_run:
            return new
        committed = self._commit(rd, new, old)
        self._after_write(rd, committed, old)
        return self._maybe_release(rd, committed)

    def _maybe_release(self, rd: ResourceDef, obj: Obj) -> Obj:
        """Remove an object being deleted once its last finalizer is gone."""
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return obj
        if (
            rd.group == ""
            and rd.plural == "namespaces"
            and (obj.get("spec") or {}).get("finalizers")
        ):
            return obj  # the namespace controller still has content to delete
        return self._remove(rd, obj)

    # ---------------------------------------------------------------- delete

    def delete(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        old = self.require(rd, namespace, name)
        meta = old["metadata"]
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise errors.conflict(
                    rd.plural,
                    rd.group,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if (
                preconditions.get("resourceVersion")
                and preconditions["resourceVersion"] != meta["resourceVersion"]
            ):
                raise errors.conflict(
                    rd.plural,
                    rd.group,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
        if dry_run:
            return old
        if meta.get("deletionTimestamp"):
            return old  # already being deleted: nothing changes
        finalizers = list(meta.get("finalizers") or ())
        if rd.group == "" and rd.plural == "namespaces":
            spec = dict(old.get("spec") or {})
            spec["finalizers"] = [NAMESPACE_FINALIZER]
            new = dict(old, spec=spec, status={"phase": "Terminating"})
            new["metadata"] = dict(meta, deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            committed = self._commit(rd, new, old)
            self._schedule_gc("namespace", meta["uid"])
            return committed
        if rd.group == CRD_GROUP and rd.plural == CRD_PLURAL and CRD_FINALIZER not in finalizers:
            finalizers.append(CRD_FINALIZER)
        if propagation == "Foreground" and self._dependents.get(meta["uid"]):
            finalizers.append(FOREGROUND_FINALIZER)
        elif propagation == "Orphan":
            self._orphan_dependents(meta["uid"])
        if finalizers:
            new = dict(old)
            new["metadata"] = dict(
                meta, deletionTimestamp=_now(), deletionGracePeriodSeconds=0, finalizers=finalizers
            )
            if rd.generation:
                new["metadata"]["generation"] = int(meta.get("generation") or 0) + 1
            committed = self._commit(rd, new, old)
            if FOREGROUND_FINALIZER in finalizers:
                self._schedule_gc("foreground", meta["uid"])
            if CRD_FINALIZER in finalizers:
                self._schedule_gc("crd", meta["uid"])
            return committed
        return self._remove(rd, old)

    def delete_collection(
        self,
        rd: ResourceDef,
        namespace: str | None,
        selector: Selector,
        *,
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> list[Obj]:
        victims = [
            obj
            for obj in self.iter_objects(rd, namespace if rd.namespaced else None)
            if not selector or selector.matches(obj)
        ]
        results = []
        for obj in victims:
            meta = obj["metadata"]
            try:
                results.append(
                    self.delete(
                        rd,
                        meta.get("namespace"),
                        meta["name"],
                        propagation=propagation,
                        dry_run=dry_run,
                    )
                )
            except errors.KubeError:
                continue
        return results

    def _orphan_dependents(self, owner_uid: str) -> None:
        for rkey, ns, name in list(self._dependents.get(owner_uid, ())):
            rd = self.registry.get(*rkey)
            obj = self.get(rd, ns, name) if rd is not None else None
            if rd is None or obj is None:
                continue
            refs = [
                r for r in obj["metadata"].get("ownerReferences") or () if r.get("uid") != owner_uid
            ]
            new = dict(obj)
            new["metadata"] = dict(obj["metadata"], ownerReferences=refs)
            if not refs:
                del new["metadata"]["ownerReferences"]
            self._commit(rd, new, obj)

    # ---------------------------------------------------------------- hooks for special kinds

    def _before_create(self, rd: ResourceDef, obj: Obj) -> None:
        if rd.group == "" and rd.plural == "namespaces":
            obj["spec"] = {"finalizers": [NAMESPACE_FINALIZER]}
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
                "metadata"
            ]["name"]
        elif rd.group == CRD_GROUP and rd.plural == CRD_PLURAL:
            new_rd = resource_from_crd(obj)
            existing = self.registry.get(new_rd.group, new_rd.plural)
            if existing is not None and existing.crd_name is None:
                raise errors.invalid(
                    "CustomResourceDefinition",
                    CRD_GROUP,
                    obj["metadata"]["name"],
                    [("spec.names.plural", "Invalid value: a built-in resource is served there")],
                )

    def _before_update(self, rd: ResourceDef, new: Obj, old: Obj) -> None:
        if rd.group == CRD_GROUP and rd.plural == CRD_PLURAL:
            new_rd = resource_from_crd(new)
            old_rd = resource_from_crd(old)
            if (new_rd.group, new_rd.plural) != (old_rd.group, old_rd.plural):
                raise errors.invalid(
                    "CustomResourceDefinition",
                    CRD_GROUP,
                    new["metadata"]["name"],
                    [("spec.names.plural", "Invalid value: field is immutable")],
                )

    def _after_write(self, rd: ResourceDef, obj: Obj, old: Obj | None) -> None:
        if (
            rd.group == CRD_GROUP
            and rd.plural == CRD_PLURAL
            and not obj["metadata"].get("deletionTimestamp")
        ):
            self._register_crd(obj)

    def _register_crd(self, crd: Obj) -> None:
        new_rd = resource_from_crd(crd)
        old_rd = self.registry.get(new_rd.group, new_rd.plural)
        if old_rd is not None and old_rd.storage_version != new_rd.storage_version:
            self._migrate_storage(old_rd, new_rd)
        self.registry.add(new_rd)
        self._storage.pop(_rkey(new_rd), None)
        # Re-point the live watchers (they keep working across CRD updates).
        for watcher in self._watchers.get(_rkey(new_rd), ()):
            watcher.rd = new_rd
        status = {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": _now(),
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": _now(),
                },
            ],
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": sorted(
                {*(crd.get("status") or {}).get("storedVersions", ()), new_rd.storage_version}
            ),
        }
        crd_rd = self.registry.get(CRD_GROUP, CRD_PLURAL)
        assert crd_rd is not None
        current = self.get(crd_rd, None, crd["metadata"]["name"])
        if current is not None:
            old_status = current.get("status") or {}
            if (
                old_status.get("acceptedNames") != status["acceptedNames"]
                or old_status.get("storedVersions") != status["storedVersions"]
                or len(old_status.get("conditions") or ()) != 2
            ):
                self._commit(crd_rd, dict(current, status=status), current)
        if self.on_resources_changed is not None:
            self.on_resources_changed()

    def _migrate_storage(self, old_rd: ResourceDef, new_rd: ResourceDef) -> None:
        new_res = kmock.resource(new_rd.group, new_rd.storage_version, new_rd.plural)
        live = self._live.get(_rkey(old_rd), {})
        for nsname, key in list(live.items()):
            entry = self.objects[key]
            new_key = (new_res, key[1], key[2])
            self.objects[new_key] = [v.raw if v is not None else None for v in entry.history]
            del self.objects[key]
            live[nsname] = new_key

    def _after_removal(self, rd: ResourceDef, final: Obj) -> None:
        meta = final["metadata"]
        self._schedule_gc("owner-gone", meta["uid"])
        if rd.group == CRD_GROUP and rd.plural == CRD_PLURAL:
            try:
                gone_rd = resource_from_crd(final)
            except errors.KubeError:
                return
            self.registry.remove(gone_rd.group, gone_rd.plural)
            self._live.pop(_rkey(gone_rd), None)
            if self.on_resources_changed is not None:
                self.on_resources_changed()
        # Containers waiting for their content to go: namespaces, CRDs, foreground owners.
        namespace = meta.get("namespace")
        if namespace and namespace not in self._ns_counts:
            self._schedule_gc("namespace-check", namespace)
        for ref in meta.get("ownerReferences") or ():
            if ref.get("uid") and ref["uid"] in self._uids:
                self._schedule_gc("foreground-check", ref["uid"])
        if rd.crd_name:
            self._schedule_gc("crd-check", rd.crd_name)

    # ---------------------------------------------------------------- background controllers

    def _schedule_gc(self, what: str, ident: str) -> None:
        if self._gc_queue is not None:
            self._gc_queue.put_nowait((what, ident))

    async def _gc_loop(self) -> None:
        assert self._gc_queue is not None
        while True:
            what, ident = await self._gc_queue.get()
            if self.gc_delay:
                await asyncio.sleep(self.gc_delay)
            try:
                self._gc_step(what, ident)
            except Exception:  # the controllers must survive anything
                logger.exception("kubeapi: the garbage collector failed on %s %s", what, ident)

    def _lookup_uid(self, uid: str) -> tuple[ResourceDef, Obj] | None:
        ref = self._uids.get(uid)
        if ref is None:
            return None
        rd = self.registry.get(*ref[0])
        if rd is None:
            return None
        obj = self.get(rd, ref[1], ref[2])
        return (rd, obj) if obj is not None else None

    def _gc_step(self, what: str, ident: str) -> None:
        if what in ("owner-gone", "foreground"):
            self._collect_dependents(ident)
        elif what == "foreground-check":
            self._finish_foreground(ident)
        elif what == "namespace":
            found = self._lookup_uid(ident)
            if found is not None:
                self._empty_namespace(found[1]["metadata"]["name"])
        elif what == "namespace-check":
            self._finish_namespace(ident)
        elif what == "crd":
            found = self._lookup_uid(ident)
            if found is not None:
                self._empty_crd(found[1])
        elif what == "crd-check":
            crd_rd = self.registry.get(CRD_GROUP, CRD_PLURAL)
            crd = self.get(crd_rd, None, ident) if crd_rd is not None else None
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                self._finish_crd(crd)

    def _collect_dependents(self, owner_uid: str) -> None:
        owner = self._lookup_uid(owner_uid)
        owner_deleting = owner is not None and FOREGROUND_FINALIZER in (
            owner[1]["metadata"].get("finalizers") or ()
        )
        if owner is not None and not owner_deleting:
            return  # the owner is alive and well
        for rkey, ns, name in list(self._dependents.get(owner_uid, ())):
            rd = self.registry.get(*rkey)
            obj = self.get(rd, ns, name) if rd is not None else None
            if rd is None or obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            others = [
                r
                for r in obj["metadata"].get("ownerReferences") or ()
                if r.get("uid") != owner_uid and r.get("uid") in self._uids
            ]
            if others:
                continue  # still owned by someone alive
            self.delete(rd, ns, name, propagation="Background")
        if owner_deleting:
            self._finish_foreground(owner_uid)

    def _finish_foreground(self, owner_uid: str) -> None:
        found = self._lookup_uid(owner_uid)
        if found is None:
            return
        rd, owner = found
        finalizers = owner["metadata"].get("finalizers") or []
        if FOREGROUND_FINALIZER not in finalizers or self._dependents.get(owner_uid):
            return
        new = dict(owner)
        new["metadata"] = dict(
            owner["metadata"], finalizers=[f for f in finalizers if f != FOREGROUND_FINALIZER]
        )
        self._maybe_release(rd, self._commit(rd, new, owner))

    def _empty_namespace(self, namespace: str) -> None:
        for rd in self.registry:
            if rd.namespaced:
                for obj in list(self.iter_objects(rd, namespace)):
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.delete(
                            rd, namespace, obj["metadata"]["name"], propagation="Background"
                        )
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        ns_rd = self.registry.get("", "namespaces")
        assert ns_rd is not None
        ns = self.get(ns_rd, None, namespace)
        if (
            ns is None
            or not ns["metadata"].get("deletionTimestamp")
            or self._ns_counts.get(namespace)
        ):
            return
        new = dict(ns, spec=dict(ns.get("spec") or {}, finalizers=[]))
        committed = self._commit(ns_rd, new, ns)
        self._maybe_release(ns_rd, committed)

    def _empty_crd(self, crd: Obj) -> None:
        try:
            rd = resource_from_crd(crd)
        except errors.KubeError:
            return
        served = self.registry.get(rd.group, rd.plural)
        if served is not None:
            for obj in list(self.iter_objects(served)):
                if not obj["metadata"].get("deletionTimestamp"):
                    self.delete(
                        served,
                        obj["metadata"].get("namespace"),
                        obj["metadata"]["name"],
                        propagation="Background",
                    )
        self._finish_crd(crd)

    def _finish_crd(self, crd: Obj) -> None:
        rd = self.registry.get(CRD_GROUP, CRD_PLURAL)
        assert rd is not None
        try:
            served = resource_from_crd(crd)
        except errors.KubeError:
            return
        if self._live.get(_rkey(served)):
            return
        current = self.get(rd, None, crd["metadata"]["name"])
        if current is None:
            return
        finalizers = [f for f in current["metadata"].get("finalizers") or () if f != CRD_FINALIZER]
        new = dict(current)
        new["metadata"] = dict(current["metadata"], finalizers=finalizers)
        self._maybe_release(rd, self._commit(rd, new, current))


def _spec_of(rd: ResourceDef, obj: Obj) -> dict[str, Any]:
    skip = {"metadata", "status"} if rd.status_subresource else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skip}


def _label_value_ok(value: str) -> bool:
    return re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value) is not None

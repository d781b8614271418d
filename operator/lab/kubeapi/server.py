"""KMock's ``KubernetesEmulator`` made realistic enough for kopf, kubectl and the kubernetes client.

What is kept from KMock: the request log and its DSL (``emulator['patch', ...] << 500`` injects
API faults ahead of the emulation), KMock's request objects, and its ``ObjectsArray`` as the
object storage (``emulator.objects[...]`` with version history for assertions). What is
replaced: URL parsing (KMock's fails on ``/api/v1/namespaces``), routing (PUT, deletecollection,
subresources), object semantics (:mod:`.store`), watches, discovery and error bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering  # StreamingError: only for user-injected streams

from faultline.lab.kubeapi import errors, protobuf, tables
from faultline.lab.kubeapi.patches import (
    JSON_PATCH,
    PATCH_TYPES,
    json_patch,
    merge_patch,
    parse_body,
)
from faultline.lab.kubeapi.registry import Registry, ResourceDef
from faultline.lab.kubeapi.selectors import Selector
from faultline.lab.kubeapi.store import Obj, Store, WatchEvent

logger = logging.getLogger(__name__)

SERVER_VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0+faultline.lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_JSON = "application/json"
_STATUS_VERBS = ["get", "patch", "update"]


@attrs.frozen
class Route:
    """A parsed resource URL."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch: bool = False  # the legacy /watch/ path prefix


def parse_route(path: str) -> Route | str | None:
    """A Route for resource URLs, a string tag for discovery URLs, None for anything else."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "root"
    if parts[0] == "api":
        if len(parts) == 1:
            return "api"
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return "apis"
        if len(parts) == 2:
            return "group"
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return "version"
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
        if not rest:
            return None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, plural, tail = rest[1], rest[2], rest[3:]
    else:
        namespace, plural, tail = None, rest[0], rest[1:]
    name = tail[0] if tail else None
    subresource = "/".join(tail[1:]) or None
    return Route(group, version, plural, namespace, name, subresource, watch)


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _for_version(rd: ResourceDef, obj: Obj, version: str) -> Obj:
    api_version = rd.api_version(version)
    return obj if obj.get("apiVersion") == api_version else dict(obj, apiVersion=api_version)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """A Kubernetes API server emulator on top of KMock (serve it with :class:`KubeAPI`)."""

    token: str | None = None  # if set together with require_token, requests must bear it
    require_token: bool = False
    history_limit: int = 3  # object versions kept in ``objects[...].history``
    tombstone_limit: int = 1000  # deleted objects kept in ``objects`` for assertions
    event_window: int = 10000  # watch events retained for resuming watches by resourceVersion
    request_log_limit: int = 500  # requests kept in the KMock request log
    watch_timeout: float = 1800.0  # server-side watch timeout when the client sets none
    bookmark_interval: float = 20.0  # periodic BOOKMARK events (when allowed by the client)
    gc_delay: float = 0.0  # seconds before the garbage collector acts on a deletion
    server_address: str = "127.0.0.1"

    registry: Registry = attrs.field(factory=Registry, init=False)
    store: Store = attrs.field(init=False)
    _request_counter: itertools.count[int] = attrs.field(factory=itertools.count, init=False)

    def __attrs_post_init__(self) -> None:
        # Deliberately not calling KMock's post-init: it registers catch-all fallback reactions,
        # whose matching costs O(request log) per request. Routing here is direct; only
        # user-added reactions go through KMock's matching.
        self.store = Store(
            self._objects,
            self.registry,
            history_limit=self.history_limit,
            tombstone_limit=self.tombstone_limit,
            event_window=self.event_window,
            gc_delay=self.gc_delay,
            on_resources_changed=self._sync_kmock_resources,
        )
        self._sync_kmock_resources()

    async def __aenter__(self) -> KubeEmulator:
        # KMock's feeder queue binds to the loop it first runs in: a fresh one per (re)start.
        self._stream_queue = asyncio.Queue()
        await super().__aenter__()
        self.store.start()
        return self

    async def __aexit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        await self.store.stop()
        await super().__aexit__(exc_type, exc_value, traceback)

    def _sync_kmock_resources(self) -> None:
        """Mirror the served resources into KMock's ``resources`` (for introspection only)."""
        self.resources.clear()
        for rd in self.registry:
            for version in rd.versions:
                self.resources[kmock.resource(rd.group, version, rd.plural)] = kmock.ResourceInfo(
                    namespaced=rd.namespaced,
                    kind=rd.kind,
                    singular=rd.singular,
                    verbs=set(rd.verbs),
                    shortnames=set(rd.short_names),
                    categories=set(rd.categories),
                    subresources=set(rd.subresources),
                )

    # ------------------------------------------------------------------ entry point

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        route = parse_route(raw_request.path)
        request = self._make_request(raw_request, body, route)
        self._requests.append(request)
        if len(self._requests) > self.request_log_limit:
            del self._requests[: len(self._requests) - self.request_log_limit]
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            try:
                return await self._handle(request)
            except rendering.StreamingError as e:  # a user-injected stream failed mid-way
                raw_response = e.args[0]
                raise e.__cause__ or e from None
        except kmock.KubernetesError as exc:
            if raw_response is not None and raw_response.prepared:
                await self._stream_error(exc, raw_response)
                return raw_response
            return self._error_response(exc)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            logger.exception(
                "kubeapi: failed to serve %s %s", raw_request.method, raw_request.path_qs
            )
            if self._errors:
                self._errors[-1].append(exc)
                del self._errors[-1][:-100]
            if raw_response is not None and raw_response.prepared:
                await self._stream_error(exc, raw_response)
                return raw_response
            return self._error_response(
                kmock.KubernetesError(status=500, reason="InternalError", message=repr(exc))
            )

    def _make_request(
        self, raw: aiohttp.web.BaseRequest, body: bytes, route: Route | str | None
    ) -> kmock.Request:
        content_type = raw.headers.get("Content-Type", "")
        try:
            data = parse_body(body, content_type) if body else None
        except errors.KubeError:
            data = None
        resource = namespace = name = subresource = None
        action: kmock.action | None = None
        if isinstance(route, Route):
            resource = kmock.resource(route.group, route.version, route.plural)
            namespace, name, subresource = route.namespace, route.name, route.subresource
            method = raw.method.upper()
            if method == "GET":
                watching = route.watch or raw.query.get("watch") in ("true", "1")
                action = (
                    kmock.action.WATCH
                    if watching
                    else kmock.action.FETCH
                    if name
                    else kmock.action.LIST
                )
            elif method == "POST":
                action = kmock.action.CREATE
            elif method in ("PUT", "PATCH"):
                action = kmock.action.UPDATE
            elif method == "DELETE":
                action = kmock.action.DELETE
        return kmock.Request(
            id=next(self._request_counter),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=action,
            resource=resource,
            namespace=namespace,
            name=name,
            subresource=subresource,
        )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self._payloads:  # user-injected reactions (fault injection) go first
            try:
                return await kmock.RawHandler._handle(self, request)
            except NotImplementedError:
                pass  # none matched: emulate
        return await self._dispatch(request)

    # ------------------------------------------------------------------ responses

    def _json(
        self, body: Any, status: int = 200, warnings: list[str] | None = None
    ) -> aiohttp.web.Response:
        response = aiohttp.web.Response(body=_dump(body), status=status, content_type=_JSON)
        for warning in warnings or ():
            response.headers.add("Warning", f'299 - "{warning}"')
        return response

    def _error_response(self, exc: kmock.KubernetesError) -> aiohttp.web.Response:
        if isinstance(exc, errors.KubeError):
            body = exc.status_body()
        else:
            body = errors.KubeError(
                status=exc.status, reason=exc.reason, message=exc.message, details=exc.details
            ).status_body()
        return self._json(body, status=exc.status)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            return self._error_response(exc)
        return self._error_response(
            kmock.KubernetesError(status=500, reason="InternalError", message=repr(exc))
        )

    async def _stream_error(self, exc: Exception, raw_response: aiohttp.web.StreamResponse) -> None:
        if isinstance(exc, errors.KubeError):
            status = exc.status_body()
        else:
            status = errors.KubeError(
                status=500, reason="InternalError", message=repr(exc)
            ).status_body()
        with contextlib.suppress(ConnectionError):
            await raw_response.write(_dump({"type": "ERROR", "object": status}) + b"\n")

    # ------------------------------------------------------------------ routing

    def _check_auth(self, request: kmock.Request) -> None:
        if not self.require_token:
            return
        header = request.headers.get("Authorization", "")
        if not self.token or header != f"Bearer {self.token}":
            raise errors.unauthorized()

    async def _dispatch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        path = raw.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        self._check_auth(request)
        if path == "/version":
            return self._json(SERVER_VERSION)
        if path == "/openapi/v2":
            # An empty protobuf message is a valid (empty) OpenAPI v2 document for kubectl.
            return aiohttp.web.Response(
                body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            )
        if path == "/openapi/v3":
            return self._json({"paths": {}})
        route = parse_route(path)
        if isinstance(route, Route):
            return await self._serve_resource(request, raw, route)
        if route == "root":
            return self._json({"paths": sorted(self._root_paths())})
        if route == "api" and raw.method == "GET":
            return self._json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                    ],
                }
            )
        if route == "apis" and raw.method == "GET":
            return self._json(
                {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()}
            )
        if route == "group" and raw.method == "GET":
            group = path.split("/")[2]
            for item in self._groups():
                if item["name"] == group:
                    return self._json(dict(item, kind="APIGroup", apiVersion="v1"))
            raise errors.resource_not_found()
        if route == "version" and raw.method == "GET":
            parts = path.split("/")
            group, version = ("", parts[2]) if parts[1] == "api" else (parts[2], parts[3])
            return self._json(self._resource_list(group, version))
        raise errors.resource_not_found()

    def _root_paths(self) -> set[str]:
        paths = {
            "/api",
            "/api/v1",
            "/apis",
            "/version",
            "/healthz",
            "/livez",
            "/readyz",
            "/openapi/v2",
            "/openapi/v3",
        }
        for group, versions in self.registry.groups().items():
            paths.add(f"/apis/{group}")
            paths.update(f"/apis/{group}/{v}" for v in versions)
        return paths

    def _groups(self) -> list[dict[str, Any]]:
        result = []
        for group, versions in sorted(self.registry.groups().items()):
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            result.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return result

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for rd in self.registry:
            if rd.group != group or version not in rd.versions:
                continue
            entry: dict[str, Any] = {
                "name": rd.plural,
                "singularName": rd.singular,
                "namespaced": rd.namespaced,
                "kind": rd.kind,
                "verbs": list(rd.verbs),
            }
            if rd.short_names:
                entry["shortNames"] = list(rd.short_names)
            if rd.categories:
                entry["categories"] = list(rd.categories)
            resources.append(entry)
            for sub in rd.subresources:
                sub_entry: dict[str, Any] = {
                    "name": f"{rd.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rd.namespaced,
                    "kind": rd.kind,
                    "verbs": list(_STATUS_VERBS),
                }
                if sub == "scale":
                    sub_entry.update(kind="Scale", group="autoscaling", version="v1")
                resources.append(sub_entry)
        if not resources and (group or version != "v1"):
            raise errors.resource_not_found()
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # ------------------------------------------------------------------ resources

    async def _serve_resource(
        self, request: kmock.Request, raw: aiohttp.web.BaseRequest, route: Route
    ) -> aiohttp.web.StreamResponse:
        rd = self.registry.lookup(route.group, route.version, route.plural)
        if rd is None:
            raise errors.resource_not_found()
        if route.namespace is not None and not rd.namespaced:
            raise errors.resource_not_found()
        query = raw.query
        method = raw.method.upper()
        ns = route.namespace
        version = route.version
        dry_run = "All" in query.getall("dryRun", [])
        field_validation = query.get("fieldValidation")
        warnings: list[str] = []
        accept = raw.headers.get("Accept")

        if method == "GET" and (route.watch or query.get("watch") in ("true", "1")):
            return await self._stream_watch(raw, rd, route, query)
        if (
            route.subresource not in (None, "status", "scale")
            or (route.subresource == "scale" and rd.scale_subresource is None)
            or (route.subresource == "status" and not rd.status_subresource)
        ):
            raise errors.resource_not_found()
        if method == "GET" and route.name is None:
            selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
            items, rv, token, remaining = self.store.list_objects(
                rd, ns, selector, limit, query.get("continue")
            )
            meta: dict[str, Any] = {"resourceVersion": rv}
            if token:
                meta["continue"] = token
                meta["remainingItemCount"] = remaining
            if tables.wants_table(accept):
                return self._json(
                    tables.to_table(
                        rd, version, items, meta, query.get("includeObject", "Metadata")
                    )
                )
            return self._json(
                {
                    "kind": rd.list_kind,
                    "apiVersion": rd.api_version(version),
                    "metadata": meta,
                    "items": [_for_version(rd, obj, version) for obj in items],
                }
            )
        if method == "GET":
            assert route.name is not None
            obj = self.store.require(rd, ns, route.name)
            if route.subresource == "scale":
                return self._json(self._scale(rd, obj))
            if tables.wants_table(accept):
                return self._json(
                    tables.to_table(
                        rd,
                        version,
                        [obj],
                        {"resourceVersion": obj["metadata"]["resourceVersion"]},
                        query.get("includeObject", "Metadata"),
                    )
                )
            return self._json(_for_version(rd, obj, version))
        if method == "POST":
            if route.name is not None:
                raise errors.method_not_allowed()
            if rd.namespaced and ns is None:
                raise errors.method_not_allowed()
            body = self._body(request)
            obj = self.store.create(
                rd,
                ns,
                body,
                version=version,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )
            return self._json(_for_version(rd, obj, version), status=201, warnings=warnings)
        if method == "PUT":
            if route.name is None:
                raise errors.method_not_allowed()
            body = self._body(request)
            if route.subresource == "scale":
                body = self._from_scale(rd, self.store.require(rd, ns, route.name), body)
                obj = self.store.replace(rd, ns, route.name, body, dry_run=dry_run)
                return self._json(self._scale(rd, obj))
            obj = self.store.replace(
                rd,
                ns,
                route.name,
                body,
                subresource=route.subresource,
                version=version,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )
            return self._json(_for_version(rd, obj, version), warnings=warnings)
        if method == "PATCH":
            if route.name is None:
                raise errors.method_not_allowed()
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in PATCH_TYPES:
                raise errors.unsupported_media_type(content_type)
            body = self._body(request)
            if route.subresource == "scale":
                current = self.store.require(rd, ns, route.name)
                scale_obj = self._scale(rd, current)
                patched = (
                    json_patch(scale_obj, body)
                    if content_type == JSON_PATCH
                    else merge_patch(scale_obj, body)
                )
                obj = self.store.replace(
                    rd, ns, route.name, self._from_scale(rd, current, patched), dry_run=dry_run
                )
                return self._json(self._scale(rd, obj))
            obj, created = self.store.patch(
                rd,
                ns,
                route.name,
                content_type,
                body,
                subresource=route.subresource,
                version=version,
                dry_run=dry_run,
                field_validation=field_validation,
                field_manager=query.get("fieldManager"),
                warnings=warnings,
            )
            return self._json(
                _for_version(rd, obj, version), status=201 if created else 200, warnings=warnings
            )
        if method == "DELETE":
            options = self._body(request, required=False) or {}
            if not isinstance(options, Mapping):
                raise errors.bad_request("DeleteOptions must be an object")
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
            if propagation is None and options.get("orphanDependents") is True:
                propagation = "Orphan"
            dry_run = dry_run or "All" in (options.get("dryRun") or ())
            if route.name is None:
                selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
                deleted = self.store.delete_collection(
                    rd, ns, selector, propagation=propagation, dry_run=dry_run
                )
                return self._json(
                    {
                        "kind": rd.list_kind,
                        "apiVersion": rd.api_version(version),
                        "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": [_for_version(rd, o, version) for o in deleted],
                    }
                )
            obj = self.store.delete(
                rd,
                ns,
                route.name,
                propagation=propagation,
                preconditions=options.get("preconditions"),
                dry_run=dry_run,
            )
            return self._json(_for_version(rd, obj, version))
        raise errors.method_not_allowed()

    def _body(self, request: kmock.Request, required: bool = True) -> Any:
        raw = request._raw_request
        assert raw is not None
        content_type = raw.headers.get("Content-Type", "")
        if "protobuf" in content_type and request.body.startswith(protobuf.MAGIC):
            try:
                return protobuf.decode(request.body)  # kubectl's typed create commands
            except protobuf.ProtobufError as exc:
                raise self._unsupported(content_type, str(exc)) from exc
        if "protobuf" in content_type or "cbor" in content_type:
            raise self._unsupported(content_type)
        if request.data is not None:  # already decoded for KMock's request log
            return request.data
        data = parse_body(request.body, content_type)
        if data is None and required:
            raise errors.bad_request("the body of the request is empty")
        return data

    @staticmethod
    def _unsupported(content_type: str, detail: str = "") -> errors.KubeError:
        return errors.KubeError(
            status=415,
            reason="UnsupportedMediaType",
            message="the body of the request was in an unknown format - accepted media types "
            f"include: application/json, application/yaml (got {content_type}) {detail}".strip(),
        )

    def _scale(self, rd: ResourceDef, obj: Obj) -> dict[str, Any]:
        scale = rd.scale_subresource or {}
        spec_path = scale.get("specReplicasPath", ".spec.replicas")
        status_path = scale.get("statusReplicasPath", ".status.replicas")
        meta = obj["metadata"]
        result = {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": tables.jsonpath(obj, spec_path) or 0},
            "status": {"replicas": tables.jsonpath(obj, status_path) or 0},
        }
        return result

    def _from_scale(self, rd: ResourceDef, obj: Obj, scale: Any) -> Obj:
        if not isinstance(scale, Mapping):
            raise errors.bad_request("a Scale object is required")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                obj["metadata"]["name"],
                [("spec.replicas", "Invalid value: must be greater than or equal to 0")],
            )
        spec_path = (rd.scale_subresource or {}).get("specReplicasPath", ".spec.replicas")
        steps = [s for s in spec_path.split(".") if s]
        new = json.loads(json.dumps(obj))
        target = new
        for step in steps[:-1]:
            target = target.setdefault(step, {})
        target[steps[-1]] = replicas
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            new["metadata"]["resourceVersion"] = rv
        return new  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ watches

    async def _stream_watch(
        self, raw: aiohttp.web.BaseRequest, rd: ResourceDef, route: Route, query: Mapping[str, str]
    ) -> aiohttp.web.StreamResponse:
        selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
        rv_param = query.get("resourceVersion") or ""
        send_initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") == "true"
        table = tables.wants_table(raw.headers.get("Accept"))
        try:
            timeout = float(query.get("timeoutSeconds") or 0) or self.watch_timeout
            since = int(rv_param) if rv_param not in ("", "0") else None
        except ValueError as exc:
            raise errors.bad_request(f"invalid watch parameters: {exc}") from exc
        if send_initial and not bookmarks:
            raise errors.invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                [
                    (
                        "allowWatchBookmarks",
                        "Required value: allowWatchBookmarks must be set to true "
                        "when sendInitialEvents is set",
                    )
                ],
            )
        initial = since is None or send_initial
        version = route.version
        api_version = rd.api_version(version)

        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = _JSON
        response.headers["Cache-Control"] = "no-cache, private"
        gone: errors.KubeError | None = None
        watcher = None
        try:
            watcher, backlog = self.store.subscribe(
                rd, route.namespace, route.name, selector, None if initial else since
            )
        except errors.KubeError as exc:
            if exc.status != 410:
                raise
            gone = exc
        snapshot_rv = self.store.rv
        snapshot = []
        if watcher is not None and initial:
            snapshot = [
                obj
                for obj in self.store.iter_objects(rd, watcher.namespace)
                if watcher.matches(obj)
            ]
        await response.prepare(raw)
        if watcher is None:
            assert gone is not None
            await response.write(_dump({"type": "ERROR", "object": gone.status_body()}) + b"\n")
            await response.write_eof()
            return response

        def encode(type_: str, obj: Obj) -> bytes:
            if table:
                obj = tables.to_table(
                    rd, version, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}
                )
            else:
                obj = _for_version(rd, obj, version)
            return _dump({"type": type_, "object": obj}) + b"\n"

        def encode_event(event: WatchEvent) -> bytes | None:
            type_ = watcher.translate(event)
            if type_ is None:
                return None
            if table:
                return encode(type_, event.obj)
            return event.encode(type_, api_version)

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return (
                _dump(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": rd.kind, "apiVersion": api_version, "metadata": meta},
                    }
                )
                + b"\n"
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        try:
            chunks = [encode("ADDED", obj) for obj in snapshot]
            if send_initial:
                chunks.append(bookmark(snapshot_rv, initial_end=True))
            chunks.extend(c for c in (encode_event(ev) for ev in backlog) if c is not None)
            if chunks:
                await response.write(b"".join(chunks))
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wait = min(deadline - now, max(0.0, next_bookmark - now) if bookmarks else 5.0, 5.0)
                try:
                    if watcher.queue.empty():
                        event = await asyncio.wait_for(
                            watcher.queue.get(), timeout=max(wait, 0.001)
                        )
                    else:
                        event = watcher.queue.get_nowait()
                except TimeoutError:
                    transport = raw.transport
                    if transport is None or transport.is_closing():
                        break
                    if bookmarks and loop.time() >= next_bookmark:
                        await response.write(bookmark(self.store.rv))
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                events = [event]
                while not watcher.queue.empty():
                    events.append(watcher.queue.get_nowait())
                closing = None in events
                if watcher.overflowed:
                    too_old = errors.gone(
                        "too old resource version: the watch consumer fell behind"
                    )
                    await response.write(
                        _dump({"type": "ERROR", "object": too_old.status_body()}) + b"\n"
                    )
                    break
                data = b"".join(
                    c
                    for c in (encode_event(ev) for ev in events if ev is not None)
                    if c is not None
                )
                if data:
                    await response.write(data)
                if closing:
                    break
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.store.unsubscribe(watcher)
        return response

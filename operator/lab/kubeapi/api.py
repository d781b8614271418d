"""``KubeAPI``: the emulated Kubernetes API served over HTTP from a background thread."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import os
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.web
import yaml

from faultline.lab.kubeapi import errors
from faultline.lab.kubeapi.patches import MERGE_PATCH, deep_copy
from faultline.lab.kubeapi.registry import CRD_GROUP, CRD_PLURAL, ResourceDef
from faultline.lab.kubeapi.server import KubeEmulator
from faultline.lab.kubeapi.store import Obj

T = TypeVar("T")
Manifest = Mapping[str, Any] | str | os.PathLike[str]


def _snapshot(obj: Obj) -> Obj:
    """A private copy: stored versions are shared with watch events and must stay intact."""
    copied: Obj = deep_copy(obj)
    return copied


def load_manifests(source: Manifest) -> list[dict[str, Any]]:
    """Objects from a mapping, a YAML/JSON text, or a path to a YAML/JSON file (``List``s
    and multi-document YAML are flattened)."""
    if isinstance(source, Mapping):
        return [dict(source)]
    text = pathlib.Path(source).read_text() if isinstance(source, os.PathLike) else source
    if isinstance(source, str) and "\n" not in source and pathlib.Path(source).is_file():
        text = pathlib.Path(source).read_text()
    docs: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if (
            isinstance(doc, dict)
            and doc.get("kind", "").endswith("List")
            and isinstance(doc.get("items"), list)
        ):
            docs.extend(item for item in doc["items"] if isinstance(item, dict))
        elif isinstance(doc, dict):
            docs.append(doc)
    return docs


class KubeAPI:
    """A Kubernetes API emulator on ``http://127.0.0.1:<port>`` with its own thread and loop.

    ``options`` go to :class:`KubeEmulator` (e.g. ``history_limit``, ``event_window``,
    ``bookmark_interval``, ``gc_delay``, ``watch_timeout``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = "faultline-lab",  # noqa: S107 - a lab placeholder, not a secret
        require_token: bool = False,
        access_log: bool = False,
        **options: Any,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the lab's Kubernetes API serves on the loopback interface only")
        self.host = host
        self._requested_port = port
        self.token = token
        self._access_log = access_log
        self._emulator = KubeEmulator(token=token, require_token=require_token, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> KubeAPI:
        """Serve in a background thread; after :meth:`stop`, it serves again on the same port
        with all objects kept (an API server restart, as far as clients can tell)."""
        if self._thread is not None:
            raise RuntimeError("KubeAPI is already started")
        if self._port is not None:
            self._requested_port = self._port
        self._ready.clear()
        self._loop = None
        self._thread = threading.Thread(target=self._run, name="faultline-kubeapi", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the Kubernetes API emulator did not start in time")
        if self._startup_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(
                "the Kubernetes API emulator failed to start"
            ) from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> KubeAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        self._startup_error = None
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); nothing else can see it
            self._startup_error = exc
            self._ready.set()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        async with self._emulator:
            extra: dict[str, Any] = {} if self._access_log else {"access_log": None}
            server = aiohttp.web.Server(self._emulator, handler_cancellation=True, **extra)
            runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, self.host, self._requested_port, reuse_address=True)
            try:
                await site.start()
                self._port = int(runner.addresses[0][1])
                self._emulator.server_address = f"{self.host}:{self._port}"
                self._ready.set()
                await self._stopping.wait()
                self._emulator.store.close_watchers()  # end the watch streams cleanly
                await asyncio.sleep(0.05)
            finally:
                await runner.cleanup()

    # ------------------------------------------------------------------ addresses & config

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("KubeAPI is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def emulator(self) -> KubeEmulator:
        """The KMock handler: its DSL injects API faults; touch it only via :meth:`call`."""
        return self._emulator

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("KubeAPI is not started")
        return self._loop

    def kubeconfig(
        self, namespace: str = "default", context: str = "faultline-lab"
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": user}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": namespace},
                }
            ],
            "current-context": context,
        }

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        namespace: str = "default",
        context: str = "faultline-lab",
    ) -> pathlib.Path:
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.kubeconfig(namespace, context), sort_keys=False))
        target.chmod(0o600)
        return target

    # ------------------------------------------------------------------ thread-safe access

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 30.0, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the emulator's loop (the only safe place) and return."""
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn(*args, **kwargs)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(runner)
        return future.result(timeout)

    def _resource(self, api_version: str, kind_or_plural: str) -> ResourceDef:
        group, _, version = api_version.rpartition("/")
        for rd in self._emulator.registry:
            if (
                rd.group == group
                and version in rd.versions
                and kind_or_plural in (rd.kind, rd.plural)
            ):
                return rd
        raise errors.resource_not_found()

    def apply(self, source: Manifest) -> builtins.list[Obj]:
        """Create or update objects (like ``kubectl apply``, by merge-patching existing ones)."""
        return [_snapshot(self.call(self._apply_one, doc)) for doc in load_manifests(source)]

    def _apply_one(self, doc: dict[str, Any]) -> Obj:
        rd = self._resource(doc.get("apiVersion", ""), doc.get("kind", ""))
        meta = doc.get("metadata") or {}
        namespace = (meta.get("namespace") or "default") if rd.namespaced else None
        store = self._emulator.store
        existing = store.get(rd, namespace, meta.get("name", "")) if meta.get("name") else None
        if existing is None:
            return store.create(rd, namespace, doc)
        if rd.group == CRD_GROUP and rd.plural == CRD_PLURAL:  # CRDs: replace the spec wholesale
            body = dict(existing, spec=doc.get("spec"))
            body["metadata"] = dict(
                existing["metadata"],
                **{k: v for k, v in meta.items() if k in ("labels", "annotations")},
            )
            return store.replace(rd, namespace, existing["metadata"]["name"], body)
        patch = {k: v for k, v in doc.items() if k != "status"}
        patch["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
        return store.patch(rd, namespace, existing["metadata"]["name"], MERGE_PATCH, patch)[0]

    def apply_crd(self, crd: Manifest) -> Obj:
        """Register a CustomResourceDefinition (create or update); it is served at once."""
        docs = load_manifests(crd)
        crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
        if len(crds) != 1 or len(docs) != 1:
            raise ValueError(
                "apply_crd() takes exactly one CustomResourceDefinition; use apply() for more"
            )
        doc = dict(crds[0])
        doc.setdefault("apiVersion", f"{CRD_GROUP}/v1")
        return self.apply(doc)[0]

    def ensure_namespace(self, name: str) -> Obj:
        def ensure() -> Obj:
            rd = self._resource("v1", "namespaces")
            existing = self._emulator.store.get(rd, None, name)
            if existing is not None:
                return existing
            return self._emulator.store.create(rd, None, {"metadata": {"name": name}})

        return _snapshot(self.call(ensure))

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        """A copy of one object (or None); ``kind`` may also be the plural name."""

        def get() -> Obj | None:
            rd = self._resource(api_version, kind)
            return self._emulator.store.get(rd, namespace if rd.namespaced else None, name)

        obj = self.call(get)
        return None if obj is None else _snapshot(obj)

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        """Copies of all objects of a kind (in one namespace, or in all when None)."""

        def list_() -> builtins.list[Obj]:
            rd = self._resource(api_version, kind)
            scope = namespace if rd.namespaced else None
            return builtins.list(self._emulator.store.iter_objects(rd, scope))

        return [_snapshot(obj) for obj in self.call(list_)]

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str | None = None,
    ) -> Obj:
        """Delete like the API does (finalizers hold it; owners' dependents are collected)."""

        def delete() -> Obj:
            rd = self._resource(api_version, kind)
            scope = namespace if rd.namespaced else None
            return self._emulator.store.delete(rd, scope, name, propagation=propagation)

        return _snapshot(self.call(delete))

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        condition: Callable[[Obj | None], Any] = lambda obj: obj is not None,
        timeout: float = 30.0,
        interval: float = 0.01,
    ) -> Obj | None:
        """Poll one object until ``condition(obj_or_None)`` is truthy; return the object."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(api_version, kind, name, namespace)
            if condition(obj):
                return obj
            if time.monotonic() >= deadline:
                where = f"{namespace}/{name}" if namespace else name
                raise TimeoutError(f"{kind} {where}: the condition is not met in {timeout}s")
            time.sleep(interval)

    def stats(self) -> dict[str, int]:
        def stats() -> dict[str, int]:
            store = self._emulator.store
            return {
                "objects": store.count(),
                "watchers": store.watcher_count(),
                "resource_version": store.rv,
                "events_retained": len(store.events),
                "requests_logged": len(self._emulator._requests),
            }

        return self.call(stats)

    def resources(self) -> builtins.list[ResourceDef]:
        return self.call(lambda: builtins.list(self._emulator.registry))

"""Kill switches wider than one FaultTarget's `safety.paused`: a namespace's, the
cluster's, and the operator's own.

- Namespace: a ConfigMap named `faultline-kill-switch` in a namespace the operator watches
  stops every injection of that namespace.
- Cluster: the same ConfigMap in the operator's own namespace (`--operator-namespace`,
  `$POD_NAMESPACE`) stops every injection in every namespace the operator watches.
- Operator: `faultline run --kill-switch` (`$FAULTLINE_KILL_SWITCH`) stops everything for
  as long as the process runs with it.

A ConfigMap engages its switch unless its `engaged` key says "false" (so a bare
`kubectl create configmap faultline-kill-switch` is enough in a hurry); its `reason` key is
shown in status and Events. Lifting: delete the ConfigMap or set `engaged: "false"`.

Engaged: Active injections in scope are recovered and end Aborted (reason KillSwitch);
new ones wait in Pending with a reason naming the switch (NamespaceKillSwitch,
ClusterKillSwitch, OperatorKillSwitch).

How the operator knows (see `KillSwitches`): kopf watches the ConfigMaps of the namespaces
it watches (`observe`), so an Active injection sees a change within a second, without an
API call. The operator's own namespace is read with GET when kopf does not watch it (at
most every POLL_SECONDS, and only while an injection asks). Before an injection starts,
both ConfigMaps are read from the API: a switch engaged while the operator was down, or
before kopf's first listing arrived, still blocks it; a read that fails blocks it too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp

from faultline.reconcile.kube import Kube, KubeError

log = logging.getLogger(__name__)

#: The ConfigMap's name; any other ConfigMap is never processed.
KILL_SWITCH_NAME = "faultline-kill-switch"
#: How old a GET of a ConfigMap kopf does not watch may be before it is read again.
POLL_SECONDS = 2.0
#: Where Kubernetes mounts the pod's namespace (a fallback for --operator-namespace).
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_REASON_CHARS = 200


class Scope(StrEnum):
    NAMESPACE = "Namespace"
    CLUSTER = "Cluster"
    OPERATOR = "Operator"


@dataclass(frozen=True)
class Engaged:
    """One engaged switch: what status and Events say about it."""

    scope: Scope
    source: str  # "ConfigMap ns/faultline-kill-switch" or the operator flag
    why: str = ""

    @property
    def reason(self) -> str:
        """The Pending reason and the Paused condition's reason: NamespaceKillSwitch, ..."""
        return f"{self.scope.value}KillSwitch"

    @property
    def message(self) -> str:
        text = f"{self.scope.value.lower()} kill switch engaged ({self.source})"
        return f"{text}: {self.why}" if self.why else text


class KillSwitchUnknownError(Exception):
    """A ConfigMap could not be read: an injection must not start on a guess."""


@dataclass
class Settings:
    """How `faultline run` was started; set before kopf runs."""

    flag: bool = False
    operator_namespace: str | None = None
    #: The namespaces kopf watches by name; None: every namespace.
    watched: frozenset[str] | None = None


SETTINGS = Settings()


def operator_namespace(given: str | None) -> str | None:
    """--operator-namespace / $POD_NAMESPACE, else the pod's service account namespace."""
    if given:
        return given
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def is_kill_switch(name: str | None) -> bool:
    return name == KILL_SWITCH_NAME


@dataclass
class KillSwitches:
    """The switches as last seen, and the reads that keep that view honest."""

    kube: Kube
    settings: Settings
    _seen: dict[str, Engaged | None] = field(default_factory=dict)
    _read_at: dict[str, float] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def scope_of(self, namespace: str) -> Scope:
        if namespace == self.settings.operator_namespace:
            return Scope.CLUSTER
        return Scope.NAMESPACE

    def watched(self, namespace: str) -> bool:
        """kopf's watch keeps this namespace's switch current (patterns count as no)."""
        watched = self.settings.watched
        return watched is None or namespace in watched

    def _engaged(self, namespace: str, body: Mapping[str, Any] | None) -> Engaged | None:
        if body is None:
            return None
        data = body.get("data") or {}
        if str(data.get("engaged", "true")).strip().lower() == "false":
            return None
        why = " ".join(str(data.get("reason", "")).split())[:_REASON_CHARS]
        return Engaged(self.scope_of(namespace), f"ConfigMap {namespace}/{KILL_SWITCH_NAME}", why)

    def observe(
        self, namespace: str, body: Mapping[str, Any] | None
    ) -> tuple[bool, Engaged | None]:
        """kopf saw the ConfigMap (body None: deleted). Returns (changed, now engaged)."""
        now = self._engaged(namespace, body)
        known = namespace in self._seen
        before = self._seen.get(namespace)
        self._seen[namespace] = now
        self._read_at[namespace] = time.monotonic()
        changed = (before != now) if known else now is not None
        if changed:
            if now is not None:
                log.warning("%s", now.message)
            else:
                log.warning("kill switch lifted (ConfigMap %s/%s)", namespace, KILL_SWITCH_NAME)
        return changed, now

    async def _read(self, namespace: str) -> Engaged | None:
        url = f"{self.kube.server}/api/v1/namespaces/{namespace}/configmaps/{KILL_SWITCH_NAME}"
        try:
            body = await self.kube._request("GET", url)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise KillSwitchUnknownError(
                f"cannot read ConfigMap {namespace}/{KILL_SWITCH_NAME}: {exc}"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KillSwitchUnknownError(
                f"cannot read ConfigMap {namespace}/{KILL_SWITCH_NAME}: {exc or type(exc).__name__}"
            ) from None
        return self._engaged(namespace, body)

    async def _current(self, namespace: str, fresh: bool) -> Engaged | None:
        if fresh:
            state = await self._read(namespace)
            if namespace not in self._seen or not self.watched(namespace):
                # A watched namespace's view is kopf's: a read must not undo a newer event.
                self._seen[namespace] = state
                self._read_at[namespace] = time.monotonic()
            return state
        if self.watched(namespace) and namespace in self._seen:
            return self._seen[namespace]
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:  # many active injections, one read
            if time.monotonic() - self._read_at.get(namespace, -POLL_SECONDS) < POLL_SECONDS:
                return self._seen.get(namespace)
            try:
                state = await self._read(namespace)
            except KillSwitchUnknownError as exc:
                log.warning("%s; keeping the last state seen", exc)
                self._read_at[namespace] = time.monotonic()
                return self._seen.get(namespace)
            if namespace not in self._seen or not self.watched(namespace):
                self._seen[namespace] = state
            self._read_at[namespace] = time.monotonic()
            return self._seen[namespace]

    async def engaged(self, namespace: str, *, fresh: bool = False) -> Engaged | None:
        """The switch that stops injections of `namespace`, or None.

        fresh: read the ConfigMaps from the API (before an injection starts); raises
        KillSwitchUnknownError when one cannot be read. Otherwise the last state seen,
        read again only where kopf does not watch (and then a failed read keeps the last
        state: an active injection is not aborted on a guess either).
        """
        if self.settings.flag:
            return Engaged(Scope.OPERATOR, "faultline run --kill-switch")
        cluster = self.settings.operator_namespace
        if cluster:
            found = await self._current(cluster, fresh)
            if found is not None:
                return found
        if namespace == cluster:
            return None
        return await self._current(namespace, fresh)

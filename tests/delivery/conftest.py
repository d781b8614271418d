"""Fixtures of the delivery tests: the Kubernetes API emulator with the charts installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from faultline.lab.kubeapi import KubeAPI


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """An emulated API with the release namespace, the ServiceMonitor CRD (prometheus-operator
    is not part of Faultline) and the faultline-crds chart installed with Helm."""
    # Imported here: without the delivery extra, delivery_support skips the test modules,
    # which must not turn into an error while this conftest is loaded.
    from delivery_support import CRDS_CHART, FIXTURES, NAMESPACE, helm

    with KubeAPI() as api:
        api.ensure_namespace(NAMESPACE)
        for doc in yaml.safe_load_all((FIXTURES / "servicemonitor-crd.yaml").read_text()):
            if doc:
                api.apply_crd(doc)
        kubeconfig = api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        with helm.Config(kubeconfig_path=str(kubeconfig), namespace=NAMESPACE) as config:
            release = config.install(str(CRDS_CHART), "faultline-crds", {})
        assert release["status"] == "deployed", release
        api.kubeconfig_path = kubeconfig  # type: ignore[attr-defined]
        yield api


@pytest.fixture(scope="module")
def kubeconfig(kube: KubeAPI) -> Path:
    path: Path = kube.kubeconfig_path  # type: ignore[attr-defined]
    return path

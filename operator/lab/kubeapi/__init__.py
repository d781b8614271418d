"""An emulated Kubernetes API for tests, the demo and benchmarks (no real cluster needed).

KMock's ``KubernetesEmulator`` with a realism layer: resourceVersions, uids, generations,
finalizers, garbage collection, status subresources, all patch flavours, selectors, watches
with bookmarks and resumption, discovery of registered CRDs, canonical error bodies::

    from faultline.lab.kubeapi import KubeAPI

    with KubeAPI() as api:
        api.apply_crd(crd)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        ...
"""

from faultline.lab.kubeapi.api import KubeAPI, load_manifests
from faultline.lab.kubeapi.errors import KubeError
from faultline.lab.kubeapi.registry import ResourceDef
from faultline.lab.kubeapi.server import KubeEmulator

__all__ = ["KubeAPI", "KubeEmulator", "KubeError", "ResourceDef", "load_manifests"]

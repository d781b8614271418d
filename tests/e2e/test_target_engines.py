"""The operator's engine cache (faultline.reconcile.targets) against the API emulator and the
lab's real sshd: one engine per target spec, and a replaced engine's SSH connections closed
once its grace period is over (not only when the operator stops)."""

from __future__ import annotations

import asyncio
import copy
import subprocess
from typing import Any

import kopf
import pytest
from e2e_support import NAMESPACE, lab_secrets, lab_target_manifest

from faultline.lab import Lab
from faultline.lab.kubeapi import KubeAPI
from faultline.reconcile import targets as targets_module
from faultline.reconcile.kube import Kube
from faultline.reconcile.targets import Targets

pytestmark = pytest.mark.lab


def ssh_sessions(lab: Lab) -> int:
    """Established TCP connections from this host to the lab nodes' sshd."""
    total = 0
    for node in lab.nodes:
        out = subprocess.run(
            ["ss", "-Htn", "state", "established", "dst", f"{node.ip}:22"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total += len(out.splitlines())
    return total


async def settled(lab: Lab, expected: int) -> int:
    """The session count once it reaches `expected` (closing is asynchronous), or after 5 s."""
    for _ in range(50):
        if (count := ssh_sessions(lab)) == expected:
            return count
        await asyncio.sleep(0.1)
    return ssh_sessions(lab)


def test_replaced_engines_close_their_connections_after_the_grace(
    healthy_lab: Lab, kube: KubeAPI, kubectl: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = healthy_lab
    for manifest in lab_secrets(lab, "engines"):
        kubectl.apply(manifest)
    spec = lab_target_manifest(lab, "engines", "engines")["spec"]
    relabelled = copy.deepcopy(spec)
    relabelled["discovery"]["static"]["nodes"][0].setdefault("labels", {})["rack"] = "r2"
    nodes = len(lab.nodes)

    async def scenario() -> None:
        client = Kube(kopf.ConnectionInfo(server=kube.url, token=kube.token))
        targets = Targets(client)
        try:
            before = ssh_sessions(lab)
            first, _ = await targets.engine_for_body(NAMESPACE, "engines", spec)
            assert all(check.reachable for check in await first.verify())
            again, _ = await targets.engine_for_body(NAMESPACE, "engines", spec)
            assert again is first  # same spec and Secrets: same engine, same connections
            assert await settled(lab, before + nodes) == before + nodes

            second, _ = await targets.engine_for_body(NAMESPACE, "engines", relabelled)
            assert second is not first and targets.retired == 1
            assert all(check.reachable for check in await second.verify())
            # Within the grace period a step that took `first` may still use it.
            assert await settled(lab, before + 2 * nodes) == before + 2 * nodes

            monkeypatch.setattr(targets_module, "RETIRED_GRACE_SECONDS", 0.0)
            third, _ = await targets.engine_for_body(NAMESPACE, "engines", spec)
            assert third is not second and targets.retired == 1  # `second` waits its turn
            assert await settled(lab, before + nodes) == before + nodes  # `first` is closed
            assert all(check.reachable for check in await third.verify())
            assert await settled(lab, before + 2 * nodes) == before + 2 * nodes
            # No further change needed: the next call (a step, a rediscovery) closes `second`.
            again, _ = await targets.engine_for_body(NAMESPACE, "engines", spec)
            assert again is third and targets.retired == 0
            assert await settled(lab, before + nodes) == before + nodes
        finally:
            await targets.close()
            await client.close()
        assert await settled(lab, before) == before

    asyncio.run(scenario())

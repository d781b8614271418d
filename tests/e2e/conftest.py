"""End-to-end: the operator as a real process, the Kubernetes API emulator, the lab.

The Kubernetes API is the one emulated system (no kube-apiserver installs here): it is
`faultline.lab.kubeapi` serving real HTTP in this process. The operator runs as its own
process (`faultline run`), so killing it with SIGKILL is real; kubectl applies manifests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import NAMESPACE, lab_secrets, lab_target_manifest

from faultline.lab import Lab
from faultline.lab.kubeapi import KubeAPI
from faultline.models.crds import crds
from faultline.models.resources import API_VERSION as API
from faultline.models.schedule import SCHEDULE_LABEL
from lab_observe import eventually

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        for crd in crds():
            api.apply_crd(crd)
        yield api


@pytest.fixture(scope="session")
def kubeconfig(kube: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def apply(self, manifest: dict[str, Any]) -> None:
        done = self("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(kubeconfig)


class OperatorProcess:
    """`faultline run` as a child process; start, SIGKILL, start again."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "faultline"),
                    "run",
                    "-n",
                    NAMESPACE,
                    "--liveness",
                    f"http://127.0.0.1:{self.port}/healthz",
                    "--metrics",
                    f"127.0.0.1:{self.metrics_port}",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            url = f"http://127.0.0.1:{self.port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
                return
            time.sleep(0.1)
        raise AssertionError(f"operator not ready:\n{self.log.read_text()[-3000:]}")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers, like a crashed pod."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, show the operator's log and the injections: CI keeps nothing else."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    op = funcargs.get("operator")
    if isinstance(op, OperatorProcess) and op.log.exists():
        report.sections.append(("operator log (tail)", op.log.read_text()[-6000:]))
    kube = funcargs.get("kube")
    if isinstance(kube, KubeAPI):
        objs = kube.list("faultline.dev/v1alpha1", "FaultInjection", NAMESPACE)
        statuses = {o["metadata"]["name"]: o.get("status") for o in objs}
        report.sections.append(("FaultInjection status", yaml.safe_dump(statuses)[-8000:]))


@pytest.fixture
def operator(kubeconfig: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kubeconfig, tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="session")
def lab_target(lab: Lab, kube: KubeAPI, kubectl: Kubectl) -> str:
    """The lab as a FaultTarget, its SSH key, known_hosts and BMC password in Secrets."""
    for secret in lab_secrets(lab):
        kubectl.apply(secret)
    kubectl.apply(lab_target_manifest(lab))
    return "lab"


@pytest.fixture
def e2e(
    healthy_lab: Lab, lab_target: str, operator: OperatorProcess, kube: KubeAPI
) -> Iterator[Any]:
    """A healthy lab, its FaultTarget and a running operator; injections removed after."""
    yield
    kind = ("faultline.dev/v1alpha1", "FaultInjection")
    for obj in kube.list(*kind, NAMESPACE):
        kube.delete(*kind, obj["metadata"]["name"], NAMESPACE)
    deadline = time.monotonic() + 60
    while left := [o["metadata"]["name"] for o in kube.list(*kind, NAMESPACE)]:
        if time.monotonic() > deadline:
            # Do not let one test's stuck injection fail every later one: release it, loudly.
            for name in left:
                kube.apply(
                    {
                        "apiVersion": kind[0],
                        "kind": kind[1],
                        "metadata": {
                            "name": name,
                            "namespace": NAMESPACE,
                            "annotations": {"faultline.dev/force-release": "true"},
                        },
                    }
                )
            raise AssertionError(f"injections not released after 60 s: {left}")
        time.sleep(0.1)


@pytest.fixture
def schedules(e2e: Any, kube: KubeAPI, kubectl: Kubectl) -> Iterator[None]:
    """Deletes every FaultSchedule after the test, and waits for the garbage collector to
    delete (and so recover) their children before `e2e` looks for leftover injections."""
    yield
    for obj in kube.list(API, "FaultSchedule", NAMESPACE):
        kubectl("delete", "faultschedule", obj["metadata"]["name"], "--wait=false")
    eventually(lambda: not kube.list(API, "FaultSchedule", NAMESPACE), 30, "schedules deleted")

    def orphans() -> list[str]:
        return [
            o["metadata"]["name"]
            for o in kube.list(API, "FaultInjection", NAMESPACE)
            if SCHEDULE_LABEL in (o["metadata"].get("labels") or {})
        ]

    eventually(lambda: not orphans(), 60, "children of deleted schedules gone")

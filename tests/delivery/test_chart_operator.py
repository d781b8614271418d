"""The operator as the chart runs it: `faultline run` with the Deployment's own arguments,
against the emulated API where Helm installed the chart; every request it makes must be
allowed by the chart's RBAC, and the RBAC grants nothing it does not use."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from delivery_support import (
    BIN,
    CRDS_CHART,
    NAMESPACE,
    OPERATOR_CHART,
    Grants,
    calls,
    container,
    helm,
    one,
)

from faultline.lab.kubeapi import KubeAPI
from faultline.models import crds

API = "faultline.dev/v1alpha1"
WORK = "lab"  # where the scenario's objects live
#: Granted on purpose but only used by paths the short scenario may not reach.
RARELY_USED = {
    ("faultline.dev", "faultinjections", "create"),  # a FaultSchedule's run starting
    ("faultline.dev", "faultinjections", "delete"),  # ... and pruned past its history limit
    ("faultline.dev", "faultschedules/finalizers", "update"),  # admission check, not a call
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Installed:
    api: KubeAPI
    kubeconfig: Path
    docs: list[dict[str, Any]]
    args: list[str]

    @property
    def grants(self) -> Grants:
        account = one(self.docs, "ServiceAccount")["metadata"]["name"]
        return Grants.of(self.docs, account, NAMESPACE)

    def requests_since(self, mark: int) -> list[Any]:
        return self.api.call(lambda: list(self.api.emulator._requests))[mark:]

    def mark(self) -> int:
        return self.api.call(lambda: len(self.api.emulator._requests))


@contextlib.contextmanager
def installed(values: dict[str, Any], tmp: Path) -> Iterator[Installed]:
    with KubeAPI(request_log_limit=100_000) as api:
        for namespace in (NAMESPACE, *values.get("watchNamespaces", []), WORK):
            api.ensure_namespace(namespace)
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        with helm.Config(kubeconfig_path=str(kubeconfig), namespace=NAMESPACE) as config:
            config.install(str(CRDS_CHART), "faultline-crds", {})
            release = config.install(str(OPERATOR_CHART), "faultline", values)
        docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
        yield Installed(api, kubeconfig, docs, list(container(docs)["args"]))


class Operator:
    """`faultline run` with the chart's arguments; only the listen addresses are moved to
    free loopback ports (several run on one machine)."""

    def __init__(self, setup: Installed, pod: str, log: Path) -> None:
        self.health = free_port()
        metrics = free_port()
        args = [a for a in setup.args if not a.startswith(("--liveness=", "--metrics="))]
        args += [f"--liveness=http://127.0.0.1:{self.health}/healthz"]
        args += [f"--metrics=127.0.0.1:{metrics}"]
        # POD_NAMESPACE: the Deployment's downward API (the cluster-wide kill switch's home).
        env = {
            **os.environ,
            "KUBECONFIG": str(setup.kubeconfig),
            "POD_ID": pod,
            "POD_NAMESPACE": NAMESPACE,
        }
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "faultline"), "run", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _scenario(api: KubeAPI) -> None:
    """A Secret, a FaultTarget whose only node refuses SSH (discovery fails fast, status is
    written), an injection that fails selection (events, status), and, where the kind
    exists, a schedule."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "lab-ssh", "namespace": WORK},
            "type": "Opaque",
            "data": {
                "id_ed25519": base64.b64encode(key.export_private_key()).decode(),
                "known_hosts": base64.b64encode(
                    b"[127.0.0.1]:1 " + key.export_public_key()
                ).decode(),
            },
        }
    )
    api.apply(
        {
            "apiVersion": API,
            "kind": "FaultTarget",
            "metadata": {"name": "refused", "namespace": WORK},
            "spec": {
                "discovery": {
                    "static": {"nodes": [{"fqdn": "node1", "ip": "127.0.0.1", "sshPort": 1}]}
                },
                "ssh": {
                    "privateKeySecret": {"name": "lab-ssh", "key": "id_ed25519"},
                    "knownHostsSecret": {"name": "lab-ssh", "key": "known_hosts"},
                    "connectTimeout": 2,
                },
                "services": {"memcached": {"driver": "sysv", "grep": "memcached"}},
            },
        }
    )
    api.apply(_injection("kill-memcached"))
    if any(k.kind == "FaultSchedule" for k in crds.KINDS):
        api.apply(
            {
                "apiVersion": API,
                "kind": "FaultSchedule",
                "metadata": {"name": "often", "namespace": WORK},
                "spec": {
                    "schedule": "@every 1s",
                    "concurrencyPolicy": "Allow",
                    "successfulHistoryLimit": 0,
                    "failedHistoryLimit": 0,
                    "template": {"spec": _injection("x")["spec"]},
                },
            }
        )


def _injection(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FaultInjection",
        "metadata": {"name": name, "namespace": WORK},
        "spec": {
            "targetRef": {"name": "refused"},
            "command": "kill memcached service on one node",
            "duration": "10s",
        },
    }


def _phase(api: KubeAPI, name: str) -> str | None:
    obj = api.get(API, "FaultInjection", name, WORK)
    return ((obj or {}).get("status") or {}).get("phase")


def _wait(what: str, check: Any, timeout: float, operator: Operator) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert operator.proc.poll() is None, f"the operator exited:\n{operator.tail()}"
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s\n{operator.tail()}")


MODES = {
    "cluster-wide, 3 replicas": {"replicaCount": 3, "rbac": {"secretNames": ["lab-ssh"]}},
    "namespaced, 2 namespaces, 2 replicas": {
        "replicaCount": 2,
        "watchNamespaces": [WORK, "chaos"],
        "rbac": {"secretNames": ["lab-ssh"]},
    },
}


@pytest.mark.parametrize("values", list(MODES.values()), ids=list(MODES))
def test_operator_works_with_exactly_the_chart_rbac(values: dict[str, Any], tmp_path: Path) -> None:
    with installed(values, tmp_path) as setup:
        api = setup.api
        _scenario(api)
        mark = setup.mark()
        operator = Operator(setup, "faultline-0", tmp_path / "operator.log")
        try:
            _wait(
                "the injection fails (no node answers)",
                lambda: _phase(api, "kill-memcached") == "Failed",
                30,
                operator,
            )
            _wait(
                "the target's status says it is not ready",
                lambda: (
                    (api.get(API, "FaultTarget", "refused", WORK) or {}).get("status") or {}
                ).get("conditions"),
                30,
                operator,
            )
            api.delete(API, "FaultInjection", "kill-memcached", WORK)
            _wait(
                "the deleted injection is released",
                lambda: api.get(API, "FaultInjection", "kill-memcached", WORK) is None,
                30,
                operator,
            )
            with contextlib.suppress(AssertionError):  # schedules: whatever runs in 2 s
                _wait(
                    "a scheduled run",
                    lambda: any(
                        c.verb == "create" and c.resource == "faultinjections"
                        for c in calls(setup.requests_since(mark))
                    ),
                    2,
                    operator,
                )
        finally:
            operator.stop()
        made = calls(setup.requests_since(mark))
        grants = setup.grants
        denied = sorted({str(c) for c in made if not grants.allows(c)})
        assert denied == [], "the chart's RBAC refuses:\n" + "\n".join(denied)
        secrets = {c.name for c in made if c.resource == "secrets"}
        assert secrets == {"lab-ssh"}
        used = {
            (rule_group, rule_resource, verb)
            for c in made
            for rule in grants.rules_for(c)
            for rule_group in rule["apiGroups"]
            for rule_resource in rule["resources"]
            for verb in rule["verbs"]
            if (rule_group, rule_resource, verb) == (c.group, c.resource, c.verb)
        }
        unused = grants.granted() - used - RARELY_USED
        assert unused == set(), f"granted but never used: {sorted(unused)}"
        assert "Traceback" not in operator.tail()


def test_two_replicas_one_works(tmp_path: Path) -> None:
    values = {"replicaCount": 2, "rbac": {"secretNames": ["lab-ssh"]}}
    with installed(values, tmp_path) as setup:
        api = setup.api
        _scenario(api)
        replicas = [Operator(setup, f"faultline-{i}", tmp_path / f"op{i}.log") for i in range(2)]
        try:

            def outcome() -> str | None:
                if any("Pausing all operators" in op.tail() for op in replicas):
                    return "every replica paused (equal priorities)"
                if _phase(api, "kill-memcached") == "Failed":
                    return "worked"
                return None

            assert _wait("a replica drives the injection", outcome, 30, replicas[0]) == "worked"
        finally:
            for operator in replicas:  # nothing to clean up: SIGKILL is quicker
                operator.proc.kill()
                operator.proc.wait(10)


def test_peering_objects_match_kopf(tmp_path: Path) -> None:
    """kopf with --peering NAME looks for a peering object of that name (cluster-scoped
    when it watches everything, in each namespace otherwise): the chart's."""
    for values in MODES.values():
        with installed(values, tmp_path) as setup:
            [name] = [a.split("=", 1)[1] for a in setup.args if a.startswith("--peering=")]
            namespaces = values.get("watchNamespaces")
            if namespaces:
                for ns in namespaces:
                    assert setup.api.get("kopf.dev/v1", "KopfPeering", name, ns) is not None
            else:
                assert setup.api.get("kopf.dev/v1", "ClusterKopfPeering", name) is not None

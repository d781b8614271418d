"""`faultline lab demo`: the operator on the lab, sample faults applied with kubectl,
their effect on the nodes and their rollback shown as they happen, then teardown."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from faultline.lab.addon_k8s import NAMESPACE, kubeconfig_path
from faultline.lab.lab import Lab

BIN = Path(sys.executable).parent
SAMPLES = ("kill-memcached.yaml", "disconnect-management.yaml")


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _nodes_line(lab: Lab) -> str:
    parts = []
    for node in lab.nodes:
        pids = lab.pids(node.name, "memcached")
        flags = lab.exec(node.name, "ip -o link show dev eth1").stdout
        mem = "memcached up" if pids else click.style("memcached DOWN", fg="red")
        link = (
            "eth1 up" if ("<UP" in flags or ",UP" in flags) else click.style("eth1 DOWN", fg="red")
        )
        parts.append(f"{node.name}: {mem}, {link}")
    return "   ".join(parts)


def _status(kubeconfig: Path, name: str) -> dict[str, Any]:
    done = _kubectl(kubeconfig, "get", "faultinjection", name, "-o", "json")
    if done.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(done.stdout).get("status") or {}
    return status


def _follow(lab: Lab, kubeconfig: Path, name: str, timeout: float = 120) -> None:
    seen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _status(kubeconfig, name)
        phase = st.get("phase")
        if phase != seen:
            seen = phase
            records = ", ".join(f"{r['node']}={r['phase']}" for r in st.get("records", []))
            extra = f" (expires {st['expiresAt']})" if phase == "Active" else ""
            click.echo(f"  {time.strftime('%H:%M:%S')} phase {phase}{extra}  records: {records}")
            click.echo(f"           {_nodes_line(lab)}")
        if phase in ("Completed", "Failed", "Aborted"):
            return
        time.sleep(0.2)
    raise click.ClickException(f"{name} did not complete within {timeout:.0f} s")


def run_demo(state_dir: Path, examples: Path) -> None:
    lab = Lab(state_dir, nodes=3, container_tools=(), addons=("k8s",))
    click.echo("bringing up a 3-node lab and the Kubernetes API emulator...")
    started = time.monotonic()
    lab.up()
    kubeconfig = kubeconfig_path(lab)
    click.echo(f"lab up in {time.monotonic() - started:.2f} s; kubeconfig: {kubeconfig}")
    log = (state_dir / "operator.log").open("ab")
    operator = subprocess.Popen(
        [
            str(BIN / "faultline"),
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            NAMESPACE,
            "--liveness",
            "none",
            "--metrics",
            "none",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        click.echo("operator started (faultline run); waiting for the FaultTarget to be Ready")
        done = _kubectl(
            kubeconfig, "wait", "faulttarget/lab", "--for=condition=Ready", "--timeout=60s"
        )
        if done.returncode != 0:
            raise click.ClickException(f"FaultTarget lab not Ready: {done.stderr}")
        click.echo(_kubectl(kubeconfig, "get", "faulttarget", "lab").stdout)
        for sample in SAMPLES:
            path = examples / sample
            click.echo(click.style(f"$ kubectl apply -f {path}", fg="cyan"))
            applied = _kubectl(kubeconfig, "apply", "-f", str(path))
            if applied.returncode != 0:
                raise click.ClickException(applied.stderr)
            _follow(lab, kubeconfig, path.stem)
            click.echo("")
        click.echo(click.style("$ kubectl get faultinjections", fg="cyan"))
        click.echo(_kubectl(kubeconfig, "get", "faultinjections").stdout)
    finally:
        operator.terminate()
        try:
            operator.wait(20)
        except subprocess.TimeoutExpired:
            operator.kill()
        click.echo("tearing the lab down")
        lab.down()


@click.command("demo")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".lab-demo"),
    show_default=True,
)
@click.option(
    "--examples",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("examples/lab"),
    show_default=True,
    help="Where the sample FaultInjections are (kill-memcached.yaml, ...).",
)
def demo(state_dir: Path, examples: Path) -> None:
    """Run the operator on a fresh lab: apply sample faults, watch them land and roll back."""
    run_demo(state_dir.absolute(), examples)

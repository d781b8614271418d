"""`faultline lab demo`: a lab, a fault injected and rolled back, what happened, teardown."""

from __future__ import annotations

import time
from pathlib import Path

import click

import faultline
from faultline.lab.lab import Lab
from faultline.models.records import ActionResult


def _pids(lab: Lab, node: str) -> str:
    found = lab.exec(node, "pgrep -x memcached || true").stdout.split()
    return " ".join(found) if found else click.style("(none)", fg="red")


def _link(lab: Lab, node: str) -> str:
    flags = lab.exec(node, "ip -o link show dev eth1").stdout
    return "UP" if "<UP" in flags or ",UP" in flags else click.style("DOWN", fg="red")


def _show(lab: Lab, title: str) -> None:
    click.echo(click.style(f"\n{title}", bold=True))
    for node in lab.nodes:
        click.echo(
            f"  {node.name}: memcached pids {_pids(lab, node.name)}, eth1 {_link(lab, node.name)}"
        )


def _report(result: ActionResult, sec: int, lab: Lab) -> None:
    for node in result.nodes:
        click.echo(f"  {node.fqdn}: {node.phase.value}: {node.output or node.error}")
    _show(lab, f"while the fault holds ({sec} s):")


def run_demo(state_dir: Path) -> None:
    lab = Lab(state_dir, nodes=3, container_tools=())
    started = time.monotonic()
    click.echo("bringing up a 3-node lab (network namespaces, sshd, memcached, redis)...")
    lab.up()
    click.echo(f"lab up in {time.monotonic() - started:.2f} s; config: {lab.config_path}")
    try:
        with faultline.connect(config_filename=lab.config_path) as cloud:
            for check in cloud.verify():
                click.echo(f"  {check.fqdn} ({check.ip}) answers SSH in {check.latency_ms:.0f} ms")
            _show(lab, "before:")
            for sentence in (
                "kill memcached service on one node for 3 seconds",
                "disconnect management network on node2 node for 2 seconds",
            ):
                click.echo(click.style(f'\n$ faultline inject "{sentence}"', fg="cyan"))
                cloud.on_injected = lambda result, sec: _report(result, sec, lab)
                result = faultline.human_api(cloud, sentence)
                for record in result.records:
                    click.echo(
                        f"  rolled back on {record.node}: {record.phase.value}: {record.output}"
                    )
                _show(lab, "after rollback:")
    finally:
        click.echo("\ntearing the lab down")
        lab.down()


@click.command("demo")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".lab-demo"),
    show_default=True,
)
def demo(state_dir: Path) -> None:
    """Inject two faults into a fresh lab, show their effect and their rollback."""
    run_demo(state_dir)

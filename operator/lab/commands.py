"""`faultline lab ...`: build, inspect, power and tear down the local lab."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from faultline.lab.lab import POWER_ACTIONS, Lab
from faultline.lab.layout import MAX_INDEX, MAX_NODES
from faultline.lab.system import LabError

F = TypeVar("F", bound=Callable[..., Any])


def state_dir_option(func: F) -> F:
    option = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".lab"),
        show_default=True,
        envvar="FAULTLINE_LAB_STATE_DIR",
        help="Where the lab keeps its keys, state and target.yaml.",
    )
    return option(func)


def _load(state_dir: Path) -> Lab:
    try:
        return Lab.load(state_dir)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("lab")
def lab() -> None:
    """Real lab nodes on this machine (network namespaces with sshd, memcached, redis).

    Needs root. `up` prints the path of a ready Faultline target config.
    """


@lab.command()
@click.option("--nodes", type=click.IntRange(1, MAX_NODES), default=3, show_default=True)
@click.option(
    "--index",
    type=click.IntRange(1, MAX_INDEX),
    default=None,
    help="Lab index K (addresses 10.251.K.x); default: the lowest free one.",
)
@click.option(
    "--containers",
    default="podman",
    show_default=True,
    help="Container engines running a `web` container in every node: podman, docker, "
    "both (comma-separated), or none.",
)
@click.option(
    "--with",
    "with_addons",
    default="",
    help="Add-ons, comma-separated: ipmi (a BMC per node), libvirt, redfish, k8s, "
    "openstack (Keystone, Nova, ... on 127.0.0.1), ganeti (a two-node cluster).",
)
@state_dir_option
def up(nodes: int, index: int | None, containers: str, with_addons: str, state_dir: Path) -> None:
    """Build the lab and wait until every node answers SSH."""
    tools = [] if containers == "none" else [t.strip() for t in containers.split(",") if t]
    unknown = sorted(set(tools) - {"podman", "docker"})
    if unknown:
        raise click.BadParameter(f"unknown engine(s) {unknown}; use podman, docker or none")
    started = time.monotonic()
    extra = [a.strip() for a in with_addons.split(",") if a.strip()]
    the_lab = Lab(state_dir, nodes=nodes, index=index, container_tools=tools, addons=extra)
    try:
        state = the_lab.up()
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"lab {state.index}: {len(state.nodes)} nodes up in {time.monotonic() - started:.2f} s",
        err=True,
    )
    click.echo(str(the_lab.config_path))


@lab.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Tear the lab down (idempotent)."""
    try:
        Lab(state_dir).down()
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc


@lab.command()
@state_dir_option
def status(state_dir: Path) -> None:
    """Show nodes, power state and SSH reachability."""
    the_lab = _load(state_dir)
    try:
        rows = the_lab.status()
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'NODE':8} {'IP':14} {'MGMT IP':14} {'POWER':8} {'SSH':5} {'BOOTS':5} INIT PID")
    for row in rows:
        click.echo(
            f"{row.name:8} {row.ip:14} {row.mgmt_ip:14} {row.power:8} "
            f"{'yes' if row.reachable else 'no':5} {row.boots:<5} {row.init_pid or '-'}"
        )
    click.echo(f"config: {the_lab.config_path}")


@lab.command()
@click.argument("node")
@click.argument("action", type=click.Choice(POWER_ACTIONS))
@click.option("--timeout", type=float, default=60.0, show_default=True)
@state_dir_option
def power(node: str, action: str, timeout: float, state_dir: Path) -> None:
    """Power a node on, off (a power cut), reset it, or print its power state."""
    try:
        click.echo(_load(state_dir).power(node, action, timeout=timeout))
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc


def _mount_demo() -> None:
    from faultline.lab.demo import demo

    lab.add_command(demo)


_mount_demo()

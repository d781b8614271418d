"""`faultline` command line: verify, discover, inject, recover, lab."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from faultline.api import CloudManagement, VerifyError, connect, discover
from faultline.human import human_api
from faultline.models.errors import ActionError, FaultlineError
from faultline.models.records import ActionResult

DEFAULT_JOURNAL = Path("~/.local/state/faultline/journal.jsonl").expanduser()

config_option = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cloud config (YAML/JSON, native or os-faults format). "
    "Default: $FAULTLINE_CONFIG, $OS_FAULTS_CONFIG, then the os-faults search path.",
)
output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
journal_option = click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_JOURNAL,
    show_default=True,
    help="Where records are kept so `faultline recover` can undo faults after a crash.",
)


def _open(config_file: Path | None, journal: Path | None = None) -> CloudManagement:
    return connect(config_filename=config_file, journal=journal)


def _emit_result(result: ActionResult, output: str, title: str = "") -> None:
    if output == "json":
        click.echo(json.dumps(result.model_dump(mode="json", by_alias=True), indent=2))
        return
    head = title or f"{result.action} {result.target or ''}".strip()
    click.echo(f"{head}  [injection {result.injection_id}]")
    for node in result.nodes:
        mark = click.style("ok  ", fg="green") if node.ok else click.style("FAIL", fg="red")
        detail = node.output if node.ok else node.error
        click.echo(f"  {mark} {node.fqdn:<24} {node.phase.value:<14} {detail or ''}")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what is sent to nodes.")
def main(verbose: bool) -> None:
    """Faultline: declarative fault injection for OpenStack clouds."""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@config_option
@output_option
def verify(config_file: Path | None, output: str) -> None:
    """Check that every node answers over SSH."""
    with _open(config_file) as cloud:
        try:
            checks = cloud.verify()
            failed = False
        except VerifyError as exc:
            checks, failed = exc.checks, True
    if output == "json":
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        ok, fail = click.style("ok  ", fg="green"), click.style("FAIL", fg="red")
        for c in checks:
            if c.reachable:
                click.echo(f"  {ok} {c.fqdn:<24} {c.latency_ms:.0f} ms")
            else:
                click.echo(f"  {fail} {c.fqdn:<24} {c.error}")
    if failed:
        sys.exit(1)


@main.command(name="discover")
@config_option
@click.option(
    "--write",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the discovered static config here (default: print it).",
)
def discover_command(config_file: Path | None, write: Path | None) -> None:
    """Find which nodes run each service and emit a static config."""
    from faultline.api import find_config_file, load_config_file

    path = config_file or find_config_file()
    if path is None:
        raise click.UsageError("no config given (-c FILE) or found")
    data = discover(load_config_file(path))
    text = yaml.safe_dump(data, sort_keys=False)
    if write:
        write.write_text(text)
        click.echo(f"wrote {write}")
    else:
        click.echo(text, nl=False)


@main.command()
@config_option
@output_option
@journal_option
@click.argument("sentence")
def inject(config_file: Path | None, output: str, journal: Path, sentence: str) -> None:
    """Inject a fault described by a sentence, e.g. "kill memcached service on one node".

    With "for N seconds" the fault is held, then rolled back (also on Ctrl-C).
    """
    with _open(config_file, journal) as cloud:
        if output == "text":
            cloud.on_injected = _holding
        try:
            result = human_api(cloud, sentence)
        except ActionError as exc:
            _emit_result(exc.result, output)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: fault rolled back", err=True)
            sys.exit(130)
        if isinstance(result, ActionResult):
            title = "rolled back" if any(r.phase == "Recovered" for r in result.records) else ""
            _emit_result(_final(result), output, title)


def _final(result: ActionResult) -> ActionResult:
    """After a hold the records carry the recovery outcome; show that per node."""
    from faultline.models.records import NodeResult, RecordPhase

    nodes = []
    for record in result.records:
        ok = record.phase in (RecordPhase.INJECTED, RecordPhase.RECOVERED)
        nodes.append(
            NodeResult(
                fqdn=record.node,
                ok=ok,
                phase=record.phase,
                output=record.output,
                error=record.error,
                record_id=record.id,
            )
        )
    return result.model_copy(update={"nodes": nodes})


def _holding(result: ActionResult, sec: int) -> None:
    _emit_result(result, "text", f"injected {result.action} {result.target or ''}".strip())
    if result.ok:
        click.echo(f"holding for {sec} s, then rolling back (Ctrl-C rolls back now)")


@main.command()
@config_option
@output_option
@journal_option
@click.option("--injection", help="Only this injection id (default: everything pending).")
def recover(config_file: Path | None, output: str, journal: Path, injection: str | None) -> None:
    """Undo faults left applied (e.g. after the process was killed), from the journal."""
    with _open(config_file, journal) as cloud:
        records = [
            r
            for r in cloud.records()
            if r.needs_recovery and (injection is None or r.injection_id == injection)
        ]
        if not records:
            click.echo("nothing to recover")
            return
        result = cloud.recover(records, raise_on_error=False)
        _emit_result(result, output)
        if cloud.journal is not None:
            cloud.journal.compact()
        if not result.ok:
            sys.exit(1)


@main.command(name="crds")
@click.option(
    "--write",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per CRD into this directory (default: print them).",
)
def crds_command(write: Path | None) -> None:
    """Print the CustomResourceDefinitions generated from the models."""
    from faultline.models import crds

    if write is None:
        click.echo(crds.stream(), nl=False)
        return
    write.mkdir(parents=True, exist_ok=True)
    for name, text in crds.render().items():
        (write / name).write_text(text)
        click.echo(f"wrote {write / name}")


@main.command(name="run")
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch this namespace (repeat for more). Default: all namespaces.",
)
@click.option(
    "--peering",
    default=None,
    help="Peering name for running several replicas (one is active). Default: standalone.",
)
@click.option(
    "--priority",
    type=int,
    default=None,
    help="Peering priority (the highest runs). Default with --peering: a random one, so "
    "replicas never tie (kopf pauses peers of equal priority).",
)
@click.option(
    "--liveness",
    default="http://0.0.0.0:8080/healthz",
    show_default=True,
    help="Health endpoint for probes; 'none' to disable.",
)
@click.option(
    "--log-format", type=click.Choice(["full", "plain", "json"]), default="full", show_default=True
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Default: in-cluster service account, then $KUBECONFIG / ~/.kube/config.",
)
@click.option(
    "--metrics", default="0.0.0.0:9090", show_default=True, help="ADDRESS:PORT, or 'none'."
)
@click.option(
    "--kill-switch",
    is_flag=True,
    envvar="FAULTLINE_KILL_SWITCH",
    help="Engage the operator-wide kill switch ($FAULTLINE_KILL_SWITCH): recover every "
    "active injection (they end Aborted) and start none until restarted without it.",
)
@click.option(
    "--operator-namespace",
    envvar="POD_NAMESPACE",
    default=None,
    help="The operator's own namespace: a faultline-kill-switch ConfigMap there stops "
    "injections in every watched namespace. Default: $POD_NAMESPACE, then the pod's "
    "service account namespace; neither: no cluster-wide ConfigMap switch.",
)
def run_operator(
    namespaces: tuple[str, ...],
    peering: str | None,
    priority: int | None,
    liveness: str,
    log_format: str,
    kubeconfig: Path | None,
    metrics: str,
    kill_switch: bool,
    operator_namespace: str | None,
) -> None:
    """Run the operator: reconcile FaultTargets and FaultInjections."""
    import asyncio
    import logging
    import os

    import kopf

    import faultline.reconcile.handlers  # noqa: F401  (registers the handlers)
    from faultline.reconcile import handle_kill_switch
    from faultline.reconcile.metrics import serve

    for handler in list(logging.getLogger().handlers):  # kopf.configure installs its own
        logging.getLogger().removeHandler(handler)
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    if metrics != "none":
        address, _, port = metrics.rpartition(":")
        serve(int(port), address or "0.0.0.0")  # noqa: S104 - a pod serves its metrics
    kopf.configure(log_format=kopf.LogFormat[log_format.upper()], verbose=False)
    switches = handle_kill_switch.SETTINGS
    switches.flag = kill_switch
    switches.operator_namespace = handle_kill_switch.operator_namespace(operator_namespace)
    switches.watched = frozenset(namespaces) if namespaces else None
    log = logging.getLogger("faultline.run")
    if kill_switch:
        log.warning("operator-wide kill switch engaged (--kill-switch): no injection will run")
    if switches.operator_namespace is None:
        log.warning("operator namespace unknown: no cluster-wide kill switch ConfigMap")
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=peering is None,
            peering_name=peering,
            priority=priority if priority is not None else _random_priority(peering),
            liveness_endpoint=None if liveness == "none" else liveness,
        )
    )


def _random_priority(peering: str | None) -> int:
    import secrets

    return secrets.randbelow(1_000_000) + 1 if peering else 0


def _mount_lab() -> None:
    try:
        from faultline.lab.commands import lab
    except ImportError:  # pragma: no cover - the lab ships with the package
        return
    main.add_command(lab)


_mount_lab()


def run() -> None:
    """Console entry point: errors Faultline raises on purpose print as one clear line."""
    try:
        main(standalone_mode=False)
    except FaultlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)

"""A connection to a cloud's OpenStack APIs (openstacksdk), and nodes discovered from Nova.

openstacksdk is optional (`pip install 'faultline[openstack]'`): it is imported on first
use, so a config without an `openstack` section never needs it. Its calls block, so they
run in a thread. Errors become OpenStackError with the cloud's answer and a fix, never a
password.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from faultline.models.config import NodeSpec
from faultline.models.errors import FaultlineError
from faultline.models.openstack import OpenStackAuth, OpenStackDiscovery

log = logging.getLogger(__name__)
T = TypeVar("T")

APP_NAME = "faultline"


class OpenStackError(FaultlineError):
    """The OpenStack API refused, failed or could not be reached."""


def _sdk() -> Any:
    try:
        import openstack
    except ImportError:
        raise OpenStackError(
            "the openstack section needs openstacksdk: pip install 'faultline[openstack]'"
        ) from None
    return openstack


def _password(auth: OpenStackAuth) -> str:
    assert auth.password_file is not None  # the model requires a password source
    try:
        return Path(auth.password_file).read_text().rstrip("\r\n")
    except OSError as exc:
        raise OpenStackError(
            f"openstack.passwordFile {auth.password_file}: cannot read it: {exc.strerror}"
        ) from None


def _verify(auth: OpenStackAuth) -> bool | str:
    if auth.insecure:
        return False
    return auth.ca_file or True


def connect(auth: OpenStackAuth) -> Any:
    """An openstacksdk Connection (blocking: call it from a thread). Nothing is sent yet."""
    openstack = _sdk()
    extra: dict[str, Any] = {}
    if auth.compute_microversion:
        extra["compute_default_microversion"] = auth.compute_microversion
    if auth.cloud:
        from openstack import config as os_config

        files = [auth.clouds_file] if auth.clouds_file else None
        if auth.clouds_file and not Path(auth.clouds_file).is_file():
            raise OpenStackError(
                f"openstack.cloudsFile {auth.clouds_file}: no such file "
                "(mount the clouds.yaml Secret there, or fix the path)"
            )
        try:
            loader = os_config.OpenStackConfig(
                config_files=files, load_envvars=files is None, app_name=APP_NAME
            )
            overrides: dict[str, Any] = {"interface": auth.interface, **extra}
            if auth.region_name:
                overrides["region_name"] = auth.region_name
            cloud = loader.get_one(auth.cloud, **overrides)
        except openstack.exceptions.ConfigException as exc:
            raise OpenStackError(
                f"openstack.cloud {auth.cloud!r}: {_clean(str(exc), None)} "
                "(name an entry of the clouds.yaml in openstack.cloudsFile)"
            ) from None
        if auth.insecure or auth.ca_file:
            cloud.config["verify"] = _verify(auth)
        return openstack.connection.Connection(config=cloud)
    return openstack.connection.Connection(
        auth_url=auth.auth_url,
        username=auth.username,
        password=_password(auth),
        project_name=auth.project_name,
        user_domain_name=auth.user_domain_name,
        project_domain_name=auth.project_domain_name,
        region_name=auth.region_name,
        interface=auth.interface,
        verify=_verify(auth),
        app_name=APP_NAME,
        **extra,
    )


def _clean(text: str, secret: str | None) -> str:
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text[:500]


def explain(exc: Exception, what: str, auth: OpenStackAuth) -> OpenStackError:
    """An OpenStackError for `exc`, with a fix where one is known."""
    from keystoneauth1 import exceptions as ks

    secret = None
    if auth.password_file:
        try:
            secret = Path(auth.password_file).read_text().rstrip("\r\n") or None
        except OSError:
            secret = None
    where = f"openstack ({auth.cloud or auth.auth_url})"
    if isinstance(exc, ks.Unauthorized):
        return OpenStackError(
            f"{where}: {what}: authentication failed (HTTP 401); check the user, password "
            "and project in the openstack section or clouds.yaml"
        )
    if isinstance(exc, ks.SSLError):
        return OpenStackError(
            f"{where}: {what}: TLS verification failed: {_clean(str(exc), secret)}; set "
            "openstack.caFile to the cloud's CA bundle"
        )
    if isinstance(exc, ks.ConnectFailure | ks.ConnectTimeout):
        return OpenStackError(f"{where}: {what}: cannot connect: {_clean(str(exc), secret)}")
    if isinstance(exc, ks.EndpointNotFound):
        return OpenStackError(
            f"{where}: {what}: no endpoint in the catalog ({_clean(str(exc), secret)}); check "
            "openstack.regionName and openstack.interface"
        )
    if isinstance(exc, OpenStackError):
        return exc
    return OpenStackError(f"{where}: {what}: {_clean(str(exc), secret)}")


class OpenStackClient:
    """One lazily opened Connection; `call` runs a blocking sdk call in a thread."""

    def __init__(self, auth: OpenStackAuth) -> None:
        self.auth = auth
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.auth)
            return self._conn

    def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        try:
            return fn(self._connection())
        except FaultlineError:
            raise
        except Exception as exc:  # the sdk raises many types; each becomes one clear error
            raise explain(exc, what, self.auth) from None

    async def call(self, what: str, fn: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._run, what, fn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)


# --- discovery ----------------------------------------------------------------------------

COMPUTE = "nova-compute"


def _resolve(host: str) -> str | None:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    addresses = [str(info[4][0]) for info in infos]
    return addresses[0] if addresses else None


def nodes_from(
    services: list[dict[str, Any]],
    hypervisors: list[dict[str, Any]],
    spec: OpenStackDiscovery,
    resolve: Callable[[str], str | None] = _resolve,
) -> list[NodeSpec]:
    """Faultline nodes from Nova's services and hypervisors (plain dicts, as the API says)."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for svc in services:
        by_host.setdefault(str(svc["host"]), []).append(svc)
    host_ips: dict[str, str] = {}
    hyper_of: dict[str, dict[str, Any]] = {}
    for hyp in hypervisors:
        host = (hyp.get("service_details") or {}).get("host") or hyp.get("name")
        if host:
            hyper_of[str(host)] = hyp
            if hyp.get("host_ip"):
                host_ips[str(host)] = str(hyp["host_ip"])
    nodes: list[NodeSpec] = []
    skipped: list[str] = []
    for host in sorted(by_host):
        binaries = {str(s["binary"]): s for s in by_host[host]}
        compute = COMPUTE in binaries
        if not compute and not spec.controllers:
            continue
        ip = spec.hosts.get(host) or host_ips.get(host) or resolve(host)
        if ip is None:
            skipped.append(host)
            continue
        labels = {"role": "compute" if compute else "controller", "nova.host": host}
        if compute and binaries[COMPUTE].get("availability_zone"):
            labels["az"] = str(binaries[COMPUTE]["availability_zone"])  # others say "internal"
        for binary, svc in binaries.items():
            labels[f"nova.{binary}"] = str(svc.get("state") or "unknown")
        hypervisor = hyper_of.get(host, {}).get("hypervisor_hostname")
        if hypervisor:
            labels["nova.hypervisor"] = str(hypervisor)
        nodes.append(NodeSpec(fqdn=host, ip=ip, labels=labels))
    if skipped:
        log.warning(
            "openstack discovery: no address for Nova host(s) %s; map them under "
            "discovery.openstack.hosts to use them",
            ", ".join(skipped),
        )
    return nodes


def _listing(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [
        {
            "host": s.host,
            "binary": s.binary,
            "state": s.state,
            "status": s.status,
            "availability_zone": s.availability_zone,
        }
        for s in conn.compute.services()
    ]
    hypervisors = [
        {
            "name": h.name,
            "hypervisor_hostname": getattr(h, "name", None),
            "host_ip": h.host_ip,
            "service_details": h.service_details or {},
        }
        for h in conn.compute.hypervisors(details=True)
    ]
    return services, hypervisors


async def discover_nodes(auth: OpenStackAuth, spec: OpenStackDiscovery) -> list[NodeSpec]:
    """Compute hosts (and controllers) known to Nova, as nodes reachable over SSH."""
    client = OpenStackClient(auth)
    try:
        services, hypervisors = await client.call("list Nova services and hypervisors", _listing)
    finally:
        await client.close()
    return nodes_from(services, hypervisors, spec)

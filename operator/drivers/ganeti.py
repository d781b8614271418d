"""Ganeti's remote API (RAPI, version 2): an async client, job polling, and node discovery.

The client speaks JSON over HTTPS with HTTP basic auth, using only the standard library
(`http.client` in a worker thread, one connection per request). Every write returns a
job id; `run_job` polls `/2/jobs/<id>` until the job and every child job it reports
(node evacuate / migrate answer with `{"jobs": [[ok, id], ...]}`) are finished, and turns a
failed job into a `GanetiJobError` naming the job and Ganeti's own error text.

RAPI quirks handled here (measured on Ganeti 3.0, see docs/drivers.md):

- A body without `Content-Type: application/json` is refused with 415: every request with a
  body sends it.
- An unknown (archived, or never existing) job id answers 200 with every field null: that
  is reported as an unknown job, not mistaken for a job still queued.
- `?dry-run=1` is ignored by `PUT /2/nodes/<n>/role` (the change is really applied), and a
  body `dry_run` there is impossible (the body is the role string). Role changes therefore
  go through `POST /2/nodes/<n>/modify`, whose body takes `dry_run`. Instance verbs are the
  opposite: their `dry_run` is fixed from the query string, and a body `dry_run` is a 400.
- The RAPI certificate is self-signed and has no subjectAltName: see `_ssl_context`.
- Error messages come HTML-escaped inside the JSON; they are unescaped before use.

No message of this module ever contains the password.
"""

from __future__ import annotations

import asyncio
import base64
import html
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from faultline.models.config import NodeSpec
from faultline.models.errors import FaultlineError
from faultline.models.ganeti import GanetiConnection, GanetiDiscovery

log = logging.getLogger(__name__)

#: Job states after which a job never changes again.
FINAL = ("success", "error", "canceled")
#: Ganeti's node role names (GET /2/nodes/<n>/role) and the one-letter `role` field.
ROLES = {"M": "master", "C": "master-candidate", "R": "regular", "D": "drained", "O": "offline"}
#: What `ganeti.role` labels say (shorter than Ganeti's own words).
ROLE_LABELS = {
    "master": "master",
    "master-candidate": "candidate",
    "regular": "regular",
    "drained": "drained",
    "offline": "offline",
}
REBOOT_TYPES = ("hard", "soft", "full")
POLL_FIRST = 0.05
POLL_MAX = 1.0


class GanetiError(FaultlineError):
    """RAPI refused or failed a request; the message names the cluster URL and what failed."""


class GanetiAuthError(GanetiError):
    """The credentials were refused (401/403)."""


class GanetiTlsError(GanetiError):
    """The RAPI certificate is not trusted."""


class GanetiNotFoundError(GanetiError):
    """The named node, instance or resource does not exist (404)."""


class GanetiJobError(GanetiError):
    """A Ganeti job failed, was canceled, is unknown or did not finish in time."""

    def __init__(self, job_id: int, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


@dataclass(frozen=True)
class JobResult:
    """A finished, successful job (and the child jobs it spawned)."""

    job_id: int
    opresult: list[Any]
    children: tuple[int, ...] = ()


def read_password(conn: GanetiConnection) -> str | None:
    """The RAPI password from `passwordFile`; errors name the file, never its content."""
    if conn.password_file is None:
        if conn.password_secret is not None:
            raise GanetiError(
                f"ganeti {conn.url}: passwordSecret {conn.password_secret.name}/"
                f"{conn.password_secret.key} is only resolved by the operator; outside "
                "Kubernetes give `passwordFile`"
            )
        return None
    try:
        return Path(conn.password_file).read_text().rstrip("\r\n")
    except OSError as exc:
        raise GanetiError(
            f"ganeti {conn.url}: cannot read passwordFile {conn.password_file}: {exc.strerror}"
        ) from None


def _ssl_context(conn: GanetiConnection) -> ssl.SSLContext:
    if conn.insecure:
        ctx = ssl._create_unverified_context()  # noqa: S323 - written out by the user
        return ctx
    if conn.ca_file is None and conn.ca_secret is not None:
        raise GanetiError(
            f"ganeti {conn.url}: caSecret {conn.ca_secret.name}/{conn.ca_secret.key} is only "
            "resolved by the operator; outside Kubernetes give `caFile`"
        )
    if conn.ca_file is None:
        # The system's CAs, with hostname checking: an ordinary public-CA certificate.
        return ssl.create_default_context()
    if not Path(conn.ca_file).is_file():
        raise GanetiError(f"ganeti {conn.url}: caFile {conn.ca_file} not found")
    ctx = ssl.create_default_context(cafile=conn.ca_file)
    # Pinning. Ganeti's RAPI certificate is self-signed, has no subjectAltName and its CN is
    # whatever the cluster was initialised with (often not the name clients use, and never
    # an IP): hostname checking would refuse every correct cluster. With `caFile` the trust
    # anchor is exactly the file the user gave -- normally the cluster's own rapi.pem -- so
    # a successful chain verification already proves the server holds that certificate's
    # key; the name adds nothing. Hostname checking therefore stays on for the system CAs
    # (above) and is off only for a pinned certificate. Point `caFile` at the certificate
    # itself, not at a CA that signs other hosts too.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    # The self-signed leaf is its own anchor (PARTIAL_CHAIN) and carries no X.509v3
    # extensions, which strict mode (the default from Python 3.13) would refuse.
    ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    ctx.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    return ctx


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:300]
    if isinstance(data, dict) and "message" in data:
        return html.unescape(str(data["message"]))
    return html.unescape(str(data))[:300]


def op_error(result: Any) -> str:
    """Ganeti's encoded error of one opcode, e.g. ["OpPrereqError", ["text", "wrong_input"]]."""
    if isinstance(result, list) and len(result) == 2 and isinstance(result[0], str):
        kind, args = result
        if isinstance(args, list) and args:
            text = str(args[0])
            extra = f" ({args[1]})" if len(args) > 1 and args[1] else ""
            return f"{kind}: {text}{extra}"
        return f"{kind}: {args}"
    return str(result)


def child_jobs(opresult: Iterable[Any]) -> list[tuple[bool, Any]]:
    """Child jobs an opcode submitted: `{"jobs": [[true, 17], [false, "why"]]}` entries."""
    found: list[tuple[bool, Any]] = []
    for result in opresult:
        if isinstance(result, dict) and isinstance(result.get("jobs"), list):
            for entry in result["jobs"]:
                if isinstance(entry, list) and len(entry) == 2:
                    found.append((bool(entry[0]), entry[1]))
    return found


class RapiClient:
    """One Ganeti cluster's RAPI. Cheap to create; `close` is a no-op kept for symmetry."""

    def __init__(self, conn: GanetiConnection) -> None:
        self.conn = conn
        self.url = conn.url
        parts = urlsplit(conn.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (5080 if self._https else 80)
        self._ctx: ssl.SSLContext | None = None
        self._auth: str | None = None
        self._loaded = False
        if conn.insecure:
            log.warning("ganeti %s: TLS certificate verification is off (insecure)", self.url)
        if not self._https and conn.username:
            log.warning("ganeti %s: plain HTTP; the password travels unencrypted", self.url)

    # -- HTTP ------------------------------------------------------------------------------

    def _setup(self) -> None:
        if self._loaded:
            return
        password = read_password(self.conn)
        if self.conn.username and password is not None:
            token = base64.b64encode(f"{self.conn.username}:{password}".encode()).decode()
            self._auth = f"Basic {token}"
        if self._https:
            self._ctx = _ssl_context(self.conn)
        self._loaded = True

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self.conn.request_timeout
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ctx
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _request_sync(self, method: str, path: str, body: Any = None) -> Any:
        self._setup()
        headers = {"Accept": "application/json", "User-Agent": "faultline"}
        if self._auth:
            headers["Authorization"] = self._auth
        payload: bytes | None = None
        if body is not None or method in ("PUT", "POST"):
            # RAPI answers 415 to a body of any other type (also to an empty one).
            payload = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        what = f"{method} {path}"
        client = self._connection()
        try:
            client.request(method, path, body=payload, headers=headers)
            response = client.getresponse()
            data = response.read()
        except ssl.SSLCertVerificationError as exc:
            where = f"the certificate in caFile {self.conn.ca_file}"
            if self.conn.ca_file is None:
                where = "the system's CA bundle"
            raise GanetiTlsError(
                f"ganeti {self.url}: TLS certificate not trusted ({exc.verify_message}) against "
                f"{where}; set `caFile` to the cluster's RAPI certificate (rapi.pem), or write "
                "`insecure: true`"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, socket.timeout | TimeoutError):
                reason = f"no answer within {self.conn.request_timeout:g} s"
            raise GanetiError(f"ganeti {self.url}: {what} failed: {reason}") from None
        finally:
            client.close()
        status = response.status
        if status in (401, 403):
            who = f"user {self.conn.username!r}" if self.conn.username else "no credentials"
            raise GanetiAuthError(
                f"ganeti {self.url}: {what} refused for {who} (HTTP {status}); check "
                "`username` and `passwordFile` (and that the user has write access in "
                "RAPI's users file)"
            )
        if status == 404:
            raise GanetiNotFoundError(f"ganeti {self.url}: {what}: not found (HTTP 404)")
        if status >= 400:
            raise GanetiError(
                f"ganeti {self.url}: {what} failed (HTTP {status}): {_error_text(data)}"
            )
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise GanetiError(
                f"ganeti {self.url}: {what}: not JSON (HTTP {status}); is this RAPI?"
            ) from None

    async def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        if query:
            path = f"{path}?{urlencode(query)}"
        return await asyncio.to_thread(self._request_sync, method, path, body)

    async def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return await self.request("GET", path, query=query)

    async def close(self) -> None:
        return None

    # -- jobs ------------------------------------------------------------------------------

    async def submit(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> int:
        answer = await self.request(method, path, body, query)
        try:
            return int(answer)
        except (TypeError, ValueError):
            raise GanetiError(
                f"ganeti {self.url}: {method} {path} answered {answer!r}, not a job id"
            ) from None

    async def job(self, job_id: int) -> dict[str, Any]:
        info = await self.get(f"/2/jobs/{job_id}")
        if not isinstance(info, dict) or info.get("status") is None:
            # RAPI answers 200 with every field null for a job it does not know.
            raise GanetiJobError(
                job_id,
                f"ganeti {self.url}: job {job_id} is unknown to the cluster (RAPI answered "
                "with empty fields: archived, or never submitted)",
            )
        return info

    async def wait_job(
        self, job_id: int, what: str = "", timeout: float | None = None
    ) -> JobResult:
        """Poll until the job and all its child jobs finished; raise unless all succeeded."""
        limit = self.conn.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        label = f"job {job_id}" + (f" ({what})" if what else "")
        delay = POLL_FIRST
        while True:
            info = await self.job(job_id)
            status = info["status"]
            if status in FINAL:
                break
            if time.monotonic() > deadline:
                raise GanetiJobError(
                    job_id,
                    f"ganeti {self.url}: {label} still {status} after {limit:g} s "
                    f"(see `gnt-job info {job_id}`)",
                )
            await asyncio.sleep(delay)
            delay = min(POLL_MAX, delay * 2)
        opresult = list(info.get("opresult") or [])
        if status != "success":
            errors = [
                op_error(r)
                for r, s in zip(opresult, info.get("opstatus") or [], strict=False)
                if s in ("error", "canceled")
            ] or [op_error(r) for r in opresult if r is not None]
            raise GanetiJobError(
                job_id,
                f"ganeti {self.url}: {label} {status}: {'; '.join(errors) or 'no details'}",
            )
        children: list[int] = []
        for ok, child in child_jobs(opresult):
            if not ok:
                raise GanetiJobError(
                    job_id,
                    f"ganeti {self.url}: {label} could not submit a child job: {child}",
                )
            left = max(0.1, deadline - time.monotonic())
            done = await self.wait_job(int(child), f"child of job {job_id}", left)
            children += [done.job_id, *done.children]
        return JobResult(job_id, opresult, tuple(children))

    async def run_job(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        what: str = "",
    ) -> JobResult:
        job_id = await self.submit(method, path, body, query)
        return await self.wait_job(job_id, what)

    # -- resources -------------------------------------------------------------------------

    @staticmethod
    def _name(name: str) -> str:
        return quote(name, safe="")

    async def nodes(self) -> list[dict[str, Any]]:
        return list(await self.get("/2/nodes", {"bulk": 1}) or [])

    async def instances(self) -> list[dict[str, Any]]:
        return list(await self.get("/2/instances", {"bulk": 1}) or [])

    async def node(self, name: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = await self.get(f"/2/nodes/{self._name(name)}")
        except GanetiNotFoundError:
            raise GanetiNotFoundError(f"ganeti {self.url}: no node {name!r}") from None
        return data

    async def instance(self, name: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = await self.get(f"/2/instances/{self._name(name)}")
        except GanetiNotFoundError:
            raise GanetiNotFoundError(f"ganeti {self.url}: no instance {name!r}") from None
        return data

    async def node_role(self, name: str) -> str:
        """master, master-candidate, regular, drained or offline."""
        node = await self.node(name)
        return node_role(node)

    # instance verbs: dry_run travels in the query string (a body dry_run is refused)

    async def instance_shutdown(
        self, name: str, timeout: int | None = None, dry_run: bool = False
    ) -> JobResult:
        """Shutdown; `timeout` is how long Ganeti waits for a clean stop before forcing
        (0: hard power off)."""
        body = {} if timeout is None else {"timeout": timeout}
        query = {"dry-run": 1} if dry_run else None
        return await self.run_job(
            "PUT", f"/2/instances/{self._name(name)}/shutdown", body, query,
            f"shutdown {name}",
        )  # fmt: skip

    async def instance_startup(self, name: str, dry_run: bool = False) -> JobResult:
        query = {"dry-run": 1} if dry_run else None
        return await self.run_job(
            "PUT", f"/2/instances/{self._name(name)}/startup", None, query, f"startup {name}"
        )

    async def instance_reboot(
        self, name: str, reboot_type: str = "hard", dry_run: bool = False
    ) -> JobResult:
        if reboot_type not in REBOOT_TYPES:
            raise GanetiError(f"reboot type {reboot_type!r} is not one of {REBOOT_TYPES}")
        query: dict[str, Any] = {"type": reboot_type}
        if dry_run:
            query["dry-run"] = 1
        return await self.run_job(
            "POST", f"/2/instances/{self._name(name)}/reboot", None, query,
            f"{reboot_type} reboot {name}",
        )  # fmt: skip

    # node roles: through /modify, whose body takes dry_run (the role PUT ignores dry-run)

    async def node_modify(
        self, name: str, params: dict[str, Any], dry_run: bool = False, what: str = ""
    ) -> JobResult:
        body = {**params, "dry_run": True} if dry_run else dict(params)
        return await self.run_job(
            "POST", f"/2/nodes/{self._name(name)}/modify", body, None, what or f"modify {name}"
        )

    async def set_node_role(self, name: str, role: str, dry_run: bool = False) -> JobResult:
        """Make the node `role` (master-candidate, regular, drained, offline).

        Ganeti promotes a node it brings back from offline or drained to master candidate
        by itself, and then refuses a second flag in the same opcode (an internal assertion
        error), so leaving offline / drained is a step of its own, followed by the change to
        the wanted role if that is not what Ganeti made of the node. A dry run checks the
        first step.
        """
        if role not in ROLE_FLAGS:
            role_params(role)  # raises, naming the settable roles
        current = await self.node_role(name)
        steps: list[dict[str, Any]] = []
        if current == "offline" and role != "offline":
            steps.append({"offline": False})
        elif current == "drained" and role not in ("drained", "offline"):
            steps.append({"drained": False})
        steps.append(role_params(role))
        done: JobResult | None = None
        for i, params in enumerate(steps):
            if i > 0:
                if dry_run:
                    break
                current = await self.node_role(name)
                if current == role:
                    break
            check = " (dry run)" if dry_run else ""
            what = (
                f"set {name} {role}{check}" if i == len(steps) - 1 else f"{name}: leave {current}"
            )
            done = await self.node_modify(name, params, dry_run, what)
        assert done is not None
        return done


def node_role(node: dict[str, Any]) -> str:
    role = node.get("role")
    if isinstance(role, str) and role in ROLES:
        return ROLES[role]
    if node.get("offline"):
        return "offline"
    if node.get("drained"):
        return "drained"
    return "master-candidate" if node.get("master_candidate") else "regular"


#: OpNodeSetParams' one flag per role (Ganeti allows at most one of them true per opcode).
ROLE_FLAGS: dict[str, dict[str, Any]] = {
    "master-candidate": {"master_candidate": True},
    "regular": {"master_candidate": False},
    "drained": {"drained": True},
    "offline": {"offline": True},
}


def role_params(role: str) -> dict[str, Any]:
    """The OpNodeSetParams flag that makes an online, undrained node `role`."""
    if role not in ROLE_FLAGS:
        raise GanetiError(
            f"cannot make a node {role!r}: Ganeti changes the master only by failover; "
            f"settable roles: {', '.join(ROLE_FLAGS)}"
        )
    return dict(ROLE_FLAGS[role])


# -- discovery ---------------------------------------------------------------------------


def _node_spec(fqdn: str, ip: str, labels: dict[str, str], mac: str | None = None) -> NodeSpec:
    return NodeSpec(fqdn=fqdn, ip=ip, mac=mac, labels=labels)


async def discover_nodes(conn: GanetiConnection, spec: GanetiDiscovery) -> list[NodeSpec]:
    """Ganeti nodes (ip: primary IP) and instances (ip: first NIC's) as Faultline nodes."""
    client = RapiClient(conn)
    found: list[NodeSpec] = []
    try:
        if spec.nodes:
            for node in await client.nodes():
                name = str(node["name"])
                labels = {
                    "ganeti.kind": "node",
                    "ganeti.name": name,
                    "ganeti.role": ROLE_LABELS[node_role(node)],
                }
                found.append(_node_spec(name, str(node["pip"]), labels))
        if spec.instances:
            for inst in await client.instances():
                name = str(inst["name"])
                ips = [ip for ip in inst.get("nic.ips") or [] if ip]
                macs = [m for m in inst.get("nic.macs") or [] if m]
                ip = spec.hosts.get(name) or (ips[0] if ips else None)
                if ip is None:
                    log.warning(
                        "ganeti %s: instance %s has no NIC IP; map it in discovery.ganeti.hosts",
                        conn.url,
                        name,
                    )
                    continue
                labels = {
                    "ganeti.kind": "instance",
                    "ganeti.name": name,
                    "ganeti.pnode": str(inst.get("pnode") or ""),
                    "ganeti.status": str(inst.get("status") or "unknown"),
                }
                found.append(_node_spec(name, ip, labels, macs[0] if macs else None))
    finally:
        await client.close()
    return found

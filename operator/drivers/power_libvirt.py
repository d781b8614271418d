"""Power through libvirt: a node is a domain (matched by name, UUID or MAC) on one hypervisor.

`args` (validated here, errors name `args.<field>`):

- `uri` (required): a libvirt connection URI, e.g. `qemu+ssh://root@hv1/system` or
  `test+tcp://127.0.0.1:16509/default`. Credentials never belong in it; errors and logs show
  it without user password and query.
- `match`: how a node finds its domain when `domains` has no entry for it: `auto` (default:
  domain name = fqdn, then the short host name, then the node's MAC in the domain XML),
  `name`, `mac`, or `uuid` (every node needs a `domains` entry holding a UUID).
- `domains`: `{fqdn: domain name or UUID}`, checked first.
- `usernameFile` / `passwordFile`: SASL credentials for the connection, read at connect time.
  Without them an authenticating daemon is refused instead of prompting on a terminal.
- `timeout` (s, default 60): how long destroy/create may take to show in the domain state.
- `shutdownTimeout` (s, default 120): how long a graceful shutdown may take.

Verbs are idempotent (powering off an off domain says so). Blocking libvirt calls run in
threads; the backend keeps one connection and reopens it when it died. Besides the
`PowerBackend` verbs it offers `reboot` (graceful), `snapshot`, `revert`, `delete_snapshot`
and `snapshots`.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

from pydantic import (
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from faultline.drivers.power import (
    PowerBackend,
    PowerError,
    PowerState,
    PowerTarget,
    parse_args,
    read_secret,
    register,
)
from faultline.models.base import Model
from faultline.models.config import PowerConfig

try:
    import libvirt  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the libvirt power backend needs libvirt-python (pip install libvirt-python; it "
        "builds against the system's libvirt: apt-get install libvirt-dev pkg-config)",
        name="libvirt-python",
    ) from _exc


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; ours are raised, with context."""


libvirt.registerErrorHandler(_quiet, None)

POLL = 0.1
#: Re-send an ACPI shutdown this often while waiting: guests may miss the first one.
SHUTDOWN_RESEND = 10.0
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: libvirt's "this hypervisor cannot do that" errors: reset falls back to destroy + create.
_UNSUPPORTED = {
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
}
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by guest power management",
}

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(value)
    except ValueError:
        return False
    return True


def safe_uri(uri: str) -> str:
    """The URI as shown in messages: no password, no query (key files, tokens), no fragment."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class LibvirtArgs(Model):
    uri: str = Field(min_length=1)
    match: Literal["auto", "name", "uuid", "mac"] = "auto"
    domains: dict[str, str] = Field(default_factory=dict)
    username_file: str | None = None
    password_file: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    shutdown_timeout: float = Field(default=120.0, gt=0)

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.scheme or "://" not in value:
            raise ValueError(
                f"{safe_uri(value)!r} is not a libvirt URI (e.g. qemu+ssh://root@host/system)"
            )
        if parts.password:
            raise ValueError("put no password in the URI; use passwordFile")
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, domain in value.items():
            if not domain.strip():
                raise ValueError(f"{key}: an empty domain name")
            if info.data.get("match") == "uuid" and not is_uuid(domain):
                raise ValueError(f"{key}: {domain!r} is not a UUID (match: uuid)")
        return value

    @model_validator(mode="after")
    def _uuid_needs_map(self) -> LibvirtArgs:
        if self.match == "uuid" and not self.domains:
            raise ValueError("match: uuid needs `domains` ({fqdn: domain UUID})")
        return self


def _message(exc: Exception) -> str:
    if isinstance(exc, libvirt.libvirtError):
        return str(exc.get_error_message() or exc)
    return str(exc)


def _code(exc: Exception) -> int | None:
    if isinstance(exc, libvirt.libvirtError):
        code = exc.get_error_code()
        return int(code) if code is not None else None
    return None


def domain_macs(xml: str) -> set[str]:
    """The MAC addresses of a domain's interfaces, lower case."""
    root = ET.fromstring(xml)  # noqa: S314 - XML from the hypervisor we were told to manage
    return {
        str(mac.get("address", "")).lower()
        for mac in root.findall("./devices/interface/mac")
        if mac.get("address")
    }


@register
class LibvirtPower(PowerBackend):
    driver = "libvirt"

    def __init__(self, config: PowerConfig) -> None:
        super().__init__(config)
        self.args = parse_args(LibvirtArgs, config)
        self.uri_label = safe_uri(self.args.uri)
        self._conn: Any = None
        self._lock = threading.Lock()
        self._uuids: dict[str, str] = {}  # fqdn -> domain UUID, once found

    # -- connection ----------------------------------------------------------------------------

    def _credentials(self) -> Callable[[list[list[Any]], object], int]:
        """The SASL callback: answers from the files, refuses anything else (no prompts)."""
        username = password = None
        if self.args.username_file:
            username = read_secret(self.args.username_file, "usernameFile", "libvirt")
        if self.args.password_file:
            password = read_secret(self.args.password_file, "passwordFile", "libvirt")

        def answer(creds: list[list[Any]], _opaque: object) -> int:
            for cred in creds:
                if cred[0] == libvirt.VIR_CRED_AUTHNAME and username is not None:
                    cred[4] = username
                elif cred[0] == libvirt.VIR_CRED_PASSPHRASE and password is not None:
                    cred[4] = password
                else:
                    return -1
            return 0

        return answer

    def _connect(self) -> Any:
        with self._lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive() == 1:
                        return conn
                except libvirt.libvirtError:
                    pass
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                self._conn = None
            auth = [
                [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE],
                self._credentials(),
                None,
            ]
            try:
                self._conn = libvirt.openAuth(self.args.uri, auth, 0)
            except libvirt.libvirtError as exc:
                raise PowerError(
                    f"libvirt: cannot connect to {self.uri_label}: {_message(exc)}"
                ) from None
            return self._conn

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    async def close(self) -> None:
        await self.in_thread(self._close)

    # -- finding a node's domain ------------------------------------------------------------------

    def _lookup(self, conn: Any, ident: str) -> Any | None:
        """A domain by UUID or name; None when there is none."""
        try:
            if is_uuid(ident):
                return conn.lookupByUUIDString(ident)
            return conn.lookupByName(ident)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _by_mac(self, conn: Any, mac: str) -> Any | None:
        wanted = mac.lower()
        found = [d for d in conn.listAllDomains(0) if wanted in domain_macs(d.XMLDesc(0))]
        if len(found) > 1:
            names = ", ".join(sorted(d.name() for d in found))
            raise PowerError(
                f"libvirt: MAC {mac} is on several domains at {self.uri_label} ({names}); "
                "map the node in args.domains"
            )
        return found[0] if found else None

    def _find(self, conn: Any, node: PowerTarget) -> Any:
        mapped = self.args.domains.get(node.fqdn) or self.args.domains.get(node.ip)
        if mapped:
            dom = self._lookup(conn, mapped)
            if dom is None:
                raise PowerError(
                    f"libvirt: no domain {mapped!r} (args.domains for {node.fqdn}) "
                    f"at {self.uri_label}"
                )
            return dom
        match = self.args.match
        tried: list[str] = []
        if match == "uuid":
            raise PowerError(
                f"libvirt: {node.fqdn} has no entry in args.domains (match: uuid) "
                f"at {self.uri_label}"
            )
        if match in ("auto", "name"):
            for name in dict.fromkeys((node.fqdn, node.fqdn.split(".", 1)[0])):
                tried.append(f"name {name!r}")
                dom = self._lookup(conn, name)
                if dom is not None:
                    return dom
        if match in ("auto", "mac"):
            if node.mac:
                tried.append(f"MAC {node.mac}")
                dom = self._by_mac(conn, node.mac)
                if dom is not None:
                    return dom
            elif match == "mac":
                raise PowerError(
                    f"libvirt: {node.fqdn} has no MAC in the target (match: mac); "
                    "add `mac` to the node"
                )
        raise PowerError(
            f"libvirt: no domain for {node.fqdn} at {self.uri_label} (tried "
            f"{', '.join(tried)}); map it in args.domains"
        )

    def _domain(self, conn: Any, node: PowerTarget) -> Any:
        known = self._uuids.get(node.fqdn)
        if known is not None:
            dom = self._lookup(conn, known)
            if dom is not None:
                return dom
            self._uuids.pop(node.fqdn, None)
        dom = self._find(conn, node)
        self._uuids[node.fqdn] = str(dom.UUIDString())
        return dom

    def _call(self, node: PowerTarget, verb: str, fn: Callable[[Any], T]) -> T:
        """Connect, find the domain, run `fn(domain)`; libvirt errors become PowerErrors."""
        conn = self._connect()
        name = "?"
        try:
            dom = self._domain(conn, node)
            name = str(dom.name())
            return fn(dom)
        except libvirt.libvirtError as exc:
            raise PowerError(
                f"libvirt {verb} of {node.fqdn} (domain {name}) at {self.uri_label} failed: "
                f"{_message(exc)}"
            ) from None

    async def _run(self, node: PowerTarget, verb: str, fn: Callable[[Any], T]) -> T:
        result: T = await self.in_thread(self._call, node, verb, fn)
        return result

    # -- waiting -------------------------------------------------------------------------------

    def _wait(self, node: PowerTarget, dom: Any, active: bool, timeout: float, verb: str) -> None:
        deadline = time.monotonic() + timeout
        while bool(dom.isActive()) != active:
            if time.monotonic() > deadline:
                raise PowerError(
                    f"libvirt {verb} of {node.fqdn} (domain {dom.name()}) at {self.uri_label}: "
                    f"still {'off' if active else 'on'} after {timeout:g} s"
                )
            time.sleep(POLL)

    @staticmethod
    def describe(dom: Any) -> str:
        state = dom.state()[0]
        return _STATE_NAMES.get(state, f"state {state}")

    # -- verbs ---------------------------------------------------------------------------------

    async def state(self, node: PowerTarget) -> PowerState:
        def fn(dom: Any) -> PowerState:
            return PowerState.ON if dom.isActive() else PowerState.OFF

        return await self._run(node, "state", fn)

    async def domain_state(self, node: PowerTarget) -> str:
        """libvirt's own word for the domain state (running, paused, shut off, ...)."""
        return await self._run(node, "state", self.describe)

    async def power_off(self, node: PowerTarget) -> str:
        def fn(dom: Any) -> str:
            if not dom.isActive():
                return f"domain {dom.name()} already off"
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                if _code(exc) != libvirt.VIR_ERR_OPERATION_INVALID or dom.isActive():
                    raise
                return f"domain {dom.name()} already off"
            self._wait(node, dom, False, self.args.timeout, "destroy")
            return f"domain {dom.name()} destroyed (hard power off)"

        return await self._run(node, "destroy", fn)

    async def power_on(self, node: PowerTarget) -> str:
        def fn(dom: Any) -> str:
            if dom.isActive():
                return f"domain {dom.name()} already on ({self.describe(dom)})"
            dom.create()
            self._wait(node, dom, True, self.args.timeout, "create")
            return f"domain {dom.name()} started"

        return await self._run(node, "create", fn)

    async def reset(self, node: PowerTarget) -> str:
        def fn(dom: Any) -> str:
            if not dom.isActive():
                dom.create()
                self._wait(node, dom, True, self.args.timeout, "create")
                return f"domain {dom.name()} was off; started"
            try:
                dom.reset(0)
            except libvirt.libvirtError as exc:
                if _code(exc) not in _UNSUPPORTED:
                    raise
                dom.destroy()
                self._wait(node, dom, False, self.args.timeout, "destroy")
                dom.create()
                self._wait(node, dom, True, self.args.timeout, "create")
                return f"domain {dom.name()} reset by destroy + create (no reset here)"
            return f"domain {dom.name()} reset"

        return await self._run(node, "reset", fn)

    async def shutdown(self, node: PowerTarget) -> str:
        def fn(dom: Any) -> str:
            if not dom.isActive():
                return f"domain {dom.name()} already off"
            timeout = self.args.shutdown_timeout
            deadline = time.monotonic() + timeout
            while dom.isActive():
                if time.monotonic() > deadline:
                    raise PowerError(
                        f"libvirt shutdown of {node.fqdn} (domain {dom.name()}) at "
                        f"{self.uri_label}: still {self.describe(dom)} after {timeout:g} s "
                        "(the guest ignores ACPI?); poweroff cuts it hard"
                    )
                try:
                    dom.shutdown()
                except libvirt.libvirtError as exc:
                    if _code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                        raise
                resend = min(deadline, time.monotonic() + SHUTDOWN_RESEND)
                while dom.isActive() and time.monotonic() < resend:
                    time.sleep(POLL)
            return f"domain {dom.name()} shut down gracefully"

        return await self._run(node, "shutdown", fn)

    async def reboot(self, node: PowerTarget) -> str:
        """Graceful reboot (the guest restarts itself); an off domain is started."""

        def fn(dom: Any) -> str:
            if not dom.isActive():
                dom.create()
                self._wait(node, dom, True, self.args.timeout, "create")
                return f"domain {dom.name()} was off; started"
            dom.reboot(0)
            return f"domain {dom.name()} asked to reboot"

        return await self._run(node, "reboot", fn)

    # -- snapshots -----------------------------------------------------------------------------

    @staticmethod
    def _snapshot_name(name: str) -> str:
        if not _SNAPSHOT_NAME.match(name):
            raise PowerError(
                f"libvirt: {name!r} is not a valid snapshot name (letters, digits, _ . : -)"
            )
        return name

    @staticmethod
    def _snapshot(dom: Any, name: str) -> Any | None:
        try:
            return dom.snapshotLookupByName(name, 0)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                return None
            raise

    async def snapshot(self, node: PowerTarget, name: str, suspend: bool = True) -> str:
        """Take a snapshot named `name` (kept if one exists); a running domain is paused
        meanwhile when `suspend`, so memory and disks agree."""
        self._snapshot_name(name)

        def fn(dom: Any) -> str:
            if self._snapshot(dom, name) is not None:
                return f"domain {dom.name()} already has snapshot {name}"
            paused = False
            if suspend and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                dom.suspend()
                paused = True
            try:
                dom.snapshotCreateXML(
                    f"<domainsnapshot><name>{escape(name)}</name>"
                    "<description>taken by faultline</description></domainsnapshot>",
                    0,
                )
            finally:
                if paused:
                    dom.resume()
            return f"domain {dom.name()}: snapshot {name} taken"

        return await self._run(node, "snapshot", fn)

    async def revert(self, node: PowerTarget, name: str, resume: bool = True) -> str:
        """Revert the domain to snapshot `name`; with `resume` it runs afterwards (also when
        the snapshot was taken paused or shut off)."""
        self._snapshot_name(name)

        def fn(dom: Any) -> str:
            snap = self._snapshot(dom, name)
            if snap is None:
                raise PowerError(
                    f"libvirt revert of {node.fqdn} (domain {dom.name()}) at {self.uri_label}: "
                    f"no snapshot {name!r}"
                )
            flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING if resume else 0
            dom.revertToSnapshot(snap, flags)
            return f"domain {dom.name()} reverted to snapshot {name} ({self.describe(dom)})"

        return await self._run(node, "revert", fn)

    async def delete_snapshot(self, node: PowerTarget, name: str) -> str:
        self._snapshot_name(name)

        def fn(dom: Any) -> str:
            snap = self._snapshot(dom, name)
            if snap is None:
                return f"domain {dom.name()} has no snapshot {name}"
            snap.delete(0)
            return f"domain {dom.name()}: snapshot {name} deleted"

        return await self._run(node, "snapshot delete", fn)

    async def snapshots(self, node: PowerTarget) -> list[str]:
        def fn(dom: Any) -> list[str]:
            return sorted(str(s.getName()) for s in dom.listAllSnapshots(0))

        return await self._run(node, "snapshot list", fn)

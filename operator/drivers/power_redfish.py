"""Power through a Redfish service (a BMC, or an emulator): ComputerSystem Reset actions.

`args` (validated here, errors name `args.<field>`):

- `url` (required): the service's base URL, e.g. `https://bmc.example.com` (the Redfish
  root is `<url>/redfish/v1/`). No credentials in it.
- `usernameFile` / `passwordFile`: the account, read from files at connect time; neither
  ever appears in messages or logs. Both or neither.
- `auth`: `auto` (default: a Redfish session when the service offers one, else HTTP basic),
  `basic` or `session`.
- `verify` (default true): TLS certificate verification. Turning it off has to be written
  out (`verify: false`); `caFile` is the CA bundle to verify against instead of the
  system's (a BMC's self-signed CA).
- `systems`: `{fqdn: system Id, Name, UUID or @odata.id}`, checked first; otherwise a node is
  the system whose Name or HostName is its fqdn or short host name.
- `timeout` (s, default 120): how long a power state may take to show after a Reset;
  `shutdownTimeout` (s, default 300) for GracefulShutdown; `requestTimeout` (s, default 30)
  per HTTP request.

Verbs: ForceOff (power_off), On (power_on), ForceRestart (reset; ForceOff + On where the
service has no ForceRestart), GracefulShutdown (shutdown), GracefulRestart (reboot). Each
waits for the PowerState it implies and is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

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
    import sushy  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from sushy import auth as sushy_auth  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from sushy import connector as sushy_connector  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from sushy import exceptions as sushy_exc  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the redfish power backend needs sushy (pip install sushy)", name="sushy"
    ) from _exc

log = logging.getLogger(__name__)

POLL = 0.25
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class RedfishArgs(Model):
    url: str = Field(min_length=1)
    username_file: str | None = None
    password_file: str | None = None
    auth: Literal["auto", "basic", "session"] = "auto"
    verify: bool = True
    ca_file: str | None = None
    systems: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=120.0, gt=0)
    shutdown_timeout: float = Field(default=300.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://bmc.example.com)")
        if parts.username or parts.password:
            raise ValueError("put no credentials in the URL; use usernameFile/passwordFile")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> RedfishArgs:
        if bool(self.username_file) != bool(self.password_file):
            raise ValueError("give both usernameFile and passwordFile, or neither")
        if self.ca_file and not self.verify:
            raise ValueError("caFile and verify: false contradict each other; drop one")
        return self


class _NoAuth(sushy_auth.AuthBase):  # type: ignore[misc]
    """For services that need no account (emulators): send no credentials at all."""

    def _do_authenticate(self) -> None:
        return None

    def can_refresh_session(self) -> bool:
        return False


@register
class RedfishPower(PowerBackend):
    driver = "redfish"

    def __init__(self, config: PowerConfig) -> None:
        super().__init__(config)
        self.args = parse_args(RedfishArgs, config)
        self.url = self.args.url
        self._root: Any = None
        self._conn: Any = None
        self._auth: Any = None
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._paths: dict[str, str] = {}  # fqdn -> system @odata.id
        self._index: tuple[dict[str, str], list[str]] | None = None
        if not self.args.verify:
            log.warning("redfish %s: TLS certificate verification is off (verify: false)", self.url)
        if self.url.startswith("http://") and self.args.password_file:
            log.warning("redfish %s: plain HTTP; the credentials travel unencrypted", self.url)

    # -- connection ----------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        """Never let a credential through, whatever a library put in its message."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _explain(self, exc: Exception) -> str:
        text = self._clean(str(exc))
        if isinstance(exc, sushy_exc.AccessError):
            return (
                f"the service refused the credentials (HTTP {getattr(exc, 'status_code', '?')}); "
                "check usernameFile/passwordFile"
            )
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            where = "the system's CA bundle"
            if self.args.ca_file:
                where = f"the CA in caFile {self.args.ca_file}"
            return (
                f"TLS certificate verification failed against {where}; set caFile to the "
                "CA that signed the service's certificate (or write `verify: false`)"
            )
        return text

    def _connect(self) -> Any:
        with self._lock:
            if self._root is not None:
                return self._root
            verify: bool | str = self.args.verify
            if self.args.ca_file:
                if not Path(self.args.ca_file).is_file():
                    raise PowerError(f"redfish {self.url}: caFile {self.args.ca_file} not found")
                verify = self.args.ca_file
            authenticator: Any = _NoAuth()
            if self.args.username_file and self.args.password_file:
                username = read_secret(self.args.username_file, "usernameFile", "redfish")
                password = read_secret(self.args.password_file, "passwordFile", "redfish")
                self._secrets = (password,)
                kind = {
                    "auto": sushy_auth.SessionOrBasicAuth,
                    "basic": sushy_auth.BasicAuth,
                    "session": sushy_auth.SessionAuth,
                }[self.args.auth]
                authenticator = kind(username=username, password=password)
            conn = sushy_connector.Connector(
                self.url,
                verify=verify,
                server_side_retries=2,
                server_side_retries_delay=1,
                default_request_timeout=self.args.request_timeout,
                connect_timeout=min(10.0, self.args.request_timeout),
            )
            try:
                self._root = sushy.Sushy(self.url, auth=authenticator, connector=conn)
            except sushy_exc.SushyError as exc:
                conn.close()
                raise PowerError(f"redfish {self.url}: {self._explain(exc)}") from None
            self._conn, self._auth = conn, authenticator
            return self._root

    def _forget(self) -> tuple[Any, Any]:
        with self._lock:
            conn, authenticator = self._conn, self._auth
            self._root = self._conn = self._auth = None
            self._index = None
        return conn, authenticator

    def _close(self) -> None:
        conn, authenticator = self._forget()
        try:
            if authenticator is not None:
                authenticator.close()  # ends a Redfish session, if there is one
            if conn is not None:
                conn.close()
        except Exception as exc:  # closing is best effort; say why, never fail
            log.debug("redfish %s: close: %s", self.url, self._clean(str(exc)))

    async def close(self) -> None:
        await self.in_thread(self._close)

    # -- finding a node's system ---------------------------------------------------------------

    def _catalog(self, root: Any, refresh: bool) -> tuple[dict[str, str], list[str]]:
        """Every way to name a system (@odata.id, Id, Name, HostName, UUID) -> its path,
        and the systems' names; read once, again when a node is not found."""
        with self._lock:
            if self._index is None or refresh:
                index: dict[str, str] = {}
                names: list[str] = []
                for path in root.get_system_collection().members_identities:
                    system = root.get_system(path)
                    keys = (path, path.rstrip("/").rsplit("/", 1)[-1], system.identity)
                    for key in (*keys, system.name, system.hostname, system.uuid):
                        if key:
                            index.setdefault(str(key), str(path))
                    names.append(str(system.name or system.identity))
                self._index = (index, names)
            return self._index

    def _find(self, root: Any, node: PowerTarget) -> str:
        wanted = self.args.systems.get(node.fqdn) or self.args.systems.get(node.ip)
        keys = (wanted,) if wanted else tuple(dict.fromkeys((node.fqdn, node.fqdn.split(".")[0])))
        names: list[str] = []
        for refresh in (False, True):
            index, names = self._catalog(root, refresh)
            for key in keys:
                if key in index:
                    return index[key]
        how = f"systems.{node.fqdn} = {wanted!r}" if wanted else f"Name {' or '.join(keys)}"
        raise PowerError(
            f"redfish {self.url}: no ComputerSystem for {node.fqdn} ({how}); the service has "
            f"{', '.join(names) or 'none'}; map it in args.systems"
        )

    def _system(self, root: Any, node: PowerTarget) -> Any:
        path = self._paths.get(node.fqdn)
        if path is None:
            path = self._find(root, node)
            self._paths[node.fqdn] = path
        return root.get_system(path)

    def _call(self, node: PowerTarget, verb: str, fn: Callable[[Any], T]) -> T:
        root = self._connect()
        label = "?"
        try:
            system = self._system(root, node)
            label = str(system.name or system.identity)
            return fn(system)
        except sushy_exc.SushyError as exc:
            if isinstance(exc, sushy_exc.ResourceNotFoundError):
                self._paths.pop(node.fqdn, None)  # the system moved: look again next time
            if isinstance(exc, sushy_exc.AccessError):
                self._forget()  # reconnect next time, reading the (maybe rotated) files again
            raise PowerError(
                f"redfish {verb} of {node.fqdn} (system {label}) at {self.url} failed: "
                f"{self._explain(exc)}"
            ) from None

    async def _run(self, node: PowerTarget, verb: str, fn: Callable[[Any], T]) -> T:
        result: T = await self.in_thread(self._call, node, verb, fn)
        return result

    # -- power state ---------------------------------------------------------------------------

    @staticmethod
    def _power(system: Any) -> PowerState:
        system.refresh(force=True)
        value = system.power_state
        if value is None:
            raise PowerError(f"redfish: system {system.identity} reports no PowerState")
        return PowerState.OFF if value == sushy.PowerState.OFF else PowerState.ON

    def _wait(self, node: PowerTarget, system: Any, want: PowerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._power(system) != want:
            if time.monotonic() > deadline:
                raise PowerError(
                    f"redfish {self.url}: {node.fqdn} (system {system.name or system.identity}) "
                    f"still reports PowerState {system.power_state.value} after {timeout:g} s"
                )
            time.sleep(POLL)

    @staticmethod
    def _reset(system: Any, *choices: Any) -> Any:
        """POST the first of `choices` the system allows; returns the one used."""
        allowed = system.get_allowed_reset_system_values()
        for choice in choices:
            if choice in allowed:
                system.reset_system(choice)
                return choice
        names = ", ".join(c.value for c in choices)
        have = ", ".join(sorted(a.value for a in allowed))
        raise PowerError(
            f"redfish: system {system.identity} allows none of {names} (it allows {have})"
        )

    # -- verbs ---------------------------------------------------------------------------------

    async def state(self, node: PowerTarget) -> PowerState:
        return await self._run(node, "state", self._power)

    async def power_off(self, node: PowerTarget) -> str:
        def fn(system: Any) -> str:
            if self._power(system) == PowerState.OFF:
                return f"system {system.name} already off"
            used = self._reset(system, sushy.ResetType.FORCE_OFF)
            self._wait(node, system, PowerState.OFF, self.args.timeout)
            return f"system {system.name}: {used.value}; PowerState Off"

        return await self._run(node, "ForceOff", fn)

    async def power_on(self, node: PowerTarget) -> str:
        def fn(system: Any) -> str:
            if self._power(system) == PowerState.ON:
                return f"system {system.name} already on"
            used = self._reset(system, sushy.ResetType.ON, sushy.ResetType.FORCE_ON)
            self._wait(node, system, PowerState.ON, self.args.timeout)
            return f"system {system.name}: {used.value}; PowerState On"

        return await self._run(node, "On", fn)

    async def reset(self, node: PowerTarget) -> str:
        def fn(system: Any) -> str:
            if self._power(system) == PowerState.OFF:
                used = self._reset(system, sushy.ResetType.ON, sushy.ResetType.FORCE_ON)
                self._wait(node, system, PowerState.ON, self.args.timeout)
                return f"system {system.name} was off: {used.value}; PowerState On"
            allowed = system.get_allowed_reset_system_values()
            if sushy.ResetType.FORCE_RESTART in allowed:
                system.reset_system(sushy.ResetType.FORCE_RESTART)
                self._wait(node, system, PowerState.ON, self.args.timeout)
                return f"system {system.name}: ForceRestart"
            self._reset(system, sushy.ResetType.FORCE_OFF)
            self._wait(node, system, PowerState.OFF, self.args.timeout)
            self._reset(system, sushy.ResetType.ON, sushy.ResetType.FORCE_ON)
            self._wait(node, system, PowerState.ON, self.args.timeout)
            return f"system {system.name}: ForceOff + On (no ForceRestart here)"

        return await self._run(node, "ForceRestart", fn)

    async def shutdown(self, node: PowerTarget) -> str:
        def fn(system: Any) -> str:
            if self._power(system) == PowerState.OFF:
                return f"system {system.name} already off"
            self._reset(system, sushy.ResetType.GRACEFUL_SHUTDOWN)
            self._wait(node, system, PowerState.OFF, self.args.shutdown_timeout)
            return f"system {system.name}: GracefulShutdown; PowerState Off"

        return await self._run(node, "GracefulShutdown", fn)

    async def reboot(self, node: PowerTarget) -> str:
        """GracefulRestart; an off system is powered on."""

        def fn(system: Any) -> str:
            if self._power(system) == PowerState.OFF:
                used = self._reset(system, sushy.ResetType.ON, sushy.ResetType.FORCE_ON)
                self._wait(node, system, PowerState.ON, self.args.timeout)
                return f"system {system.name} was off: {used.value}; PowerState On"
            self._reset(system, sushy.ResetType.GRACEFUL_RESTART)
            return f"system {system.name}: GracefulRestart"

        return await self._run(node, "GracefulRestart", fn)

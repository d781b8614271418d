"""Power through a node's BMC over IPMI 2.0 (RMCP+, UDP) with pyghmi.

Each node names its BMC in `nodes[].bmc` (`address`, `port`, `username`, `passwordFile`);
`args` give defaults for what a node leaves out and the backend's settings (errors name
`args.<field>`):

- `port` (default 623), `username`, `passwordFile`: defaults for every node's BMC.
- `timeout` (s, default 120): how long a power state may take to show after a request
  (for a soft shutdown: how long the operating system may take to power off).
- `retries` (default 2): further attempts after a BMC answered busy or not at all.

Verbs map to Chassis Control: power down (power_off), power up (power_on), hard reset
(reset; a node that is off is powered up instead), soft-off / ACPI (shutdown). Each checks the
state first (a node already in the wanted state is left alone and the answer says so) and
waits until Get Chassis Status shows the new state.

The password is read from its file for each operation and never appears in a message or a
log line; a BMC that refuses the login is reported as "authentication refused by BMC
ADDRESS:PORT for NODE". Each operation logs in once and out at its end (a login costs a few
milliseconds); operations on one BMC run one at a time. pyghmi is blocking, so an operation
runs in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from faultline.drivers.power import PowerBackend, PowerError, PowerState, PowerTarget, register
from faultline.models.base import Model
from faultline.models.config import PowerConfig
from faultline.models.errors import ConfigError, config_error_from_pydantic

try:
    from pyghmi import exceptions as pyghmi_exc  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from pyghmi.ipmi import command as ipmi_command  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the ipmi power backend needs pyghmi (pip install pyghmi)", name="pyghmi"
    ) from _exc

log = logging.getLogger(__name__)

T = TypeVar("T")

POLL = 0.1  # between Get Chassis Status while waiting for a state
BACKOFF = 0.5  # before a retry; doubles each time
IPMI_PORT = 623

# pyghmi's messages (it keeps no completion code for these): a refused login ...
_AUTH_SIGNS = (
    "incorrect password",  # the BMC's RAKP2 proves another password
    "unauthorized name",
    "unauthorized role",
    "invalid role",
    "invalid username length",
    "invalid integrity check value",
    "invalid rakp4 integrity code",  # wrong Kg (BMC key)
    "insufficient privilege",
)
# ... and a BMC that is busy or did not answer (worth another attempt).
_TRANSIENT_SIGNS = (
    "node busy",
    "insufficient resources",  # all sessions taken: they time out
    "timeout",
    "timed out",
    "no longer connected",
    "session failed to initialize",
    "invalid session id",
    "inactive session id",
    "temporar",
)


class IpmiArgs(Model):
    port: int = Field(default=IPMI_PORT, ge=1, le=65535)
    username: str | None = None
    password_file: str | None = None
    timeout: float = Field(default=120.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)


@dataclass(frozen=True)
class Bmc:
    """One node's BMC, resolved (node fields over `args` defaults); no password here."""

    node: str
    address: str
    port: int
    username: str
    password_file: str

    @property
    def where(self) -> str:
        return f"BMC {self.address}:{self.port}"

    def password(self) -> str:
        try:
            text = Path(self.password_file).read_text()
        except OSError as exc:
            raise PowerError(
                f"ipmi: cannot read the password file {self.password_file} of {self.where} "
                f"for {self.node}: {exc.strerror}"
            ) from None
        lines = text.splitlines()
        return lines[0] if lines else ""


class _AuthRefused(Exception):
    pass


class _Transient(Exception):
    pass


def _classify(exc: BaseException) -> type[Exception] | None:
    text = str(exc).lower()
    if any(sign in text for sign in _AUTH_SIGNS):
        return _AuthRefused
    if not text or text == "none" or any(sign in text for sign in _TRANSIENT_SIGNS):
        return _Transient
    return None


_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _bmc_lock(bmc: Bmc) -> threading.Lock:
    """Operations on one BMC run one at a time (pyghmi shares a session per BMC and user)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((bmc.address, bmc.port), threading.Lock())


class _Session:
    """One login to a BMC for one operation; bounded retries; messages without secrets."""

    def __init__(self, bmc: Bmc, retries: int) -> None:
        self.bmc = bmc
        self.retries = retries
        self._password = bmc.password()
        self._command: Any = None

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _login(self) -> Any:
        if self._command is None:
            # Bytes, not str: pyghmi compares its cached sessions' (bytes) credentials with
            # the caller's, and with str never finds them (a second login then hangs).
            self._command = ipmi_command.Command(
                bmc=self.bmc.address,
                userid=self.bmc.username.encode(),
                password=self._password.encode(),
                port=self.bmc.port,
            )
        return self._command

    def close(self) -> None:
        command, self._command = self._command, None
        if command is not None:
            try:
                command.ipmi_session.logout()
            except Exception as exc:  # a session the BMC already dropped
                log.debug("ipmi: logout from %s: %s", self.bmc.where, self._scrub(str(exc)))

    def call(self, what: str, fn: Callable[[Any], T], *, retry_unanswered: bool = True) -> T:
        """fn(command) with retries. `retry_unanswered=False` for requests that must not run
        twice (a hard reset): only a login that failed or a busy BMC is retried then."""
        bmc = self.bmc
        attempt = 0
        while True:
            sent = False
            try:
                command = self._login()
                sent = True
                return fn(command)
            except (pyghmi_exc.PyghmiException, OSError) as exc:
                kind = _classify(exc)
                detail = self._scrub(str(exc)) if str(exc) not in ("", "None") else "no answer"
                if kind is _AuthRefused:
                    raise PowerError(
                        f"authentication refused by {bmc.where} for {bmc.node} "
                        f"(user {bmc.username!r}: check the username and the password in "
                        f"{bmc.password_file})"
                    ) from None
                retryable = kind is _Transient and (
                    retry_unanswered or not sent or "busy" in detail.lower()
                )
                if not retryable or attempt >= self.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise PowerError(
                        f"{bmc.where} for {bmc.node}: {what} failed{tries}: {detail}"
                    ) from None
                log.info(
                    "ipmi: %s for %s: %s (%s); trying again", bmc.where, bmc.node, what, detail
                )
                self.close()
                time.sleep(BACKOFF * 2**attempt)
                attempt += 1
            except Exception as exc:  # a BMC answering something pyghmi cannot parse
                detail = self._scrub(f"{type(exc).__name__}: {exc}")
                raise PowerError(f"{bmc.where} for {bmc.node}: {what} failed: {detail}") from None

    def state(self) -> PowerState:
        answer = self.call("get power state", lambda c: c.get_power())
        return PowerState.ON if answer.get("powerstate") == "on" else PowerState.OFF

    def request(self, powerstate: str, *, retry_unanswered: bool = True) -> None:
        self.call(
            f"chassis control {powerstate}",
            lambda c: c.set_power(powerstate, wait=False),
            retry_unanswered=retry_unanswered,
        )

    def wait(self, wanted: PowerState, timeout: float, after: str) -> float:
        started = time.monotonic()
        while self.state() != wanted:
            if time.monotonic() - started > timeout:
                raise PowerError(
                    f"{self.bmc.node} is not {wanted.value} {timeout:g} s after {after} "
                    f"({self.bmc.where})"
                )
            time.sleep(POLL)
        return time.monotonic() - started


@register
class IpmiPower(PowerBackend):
    driver = "ipmi"

    def __init__(self, config: PowerConfig) -> None:
        super().__init__(config)
        try:
            self.args = IpmiArgs.model_validate(config.args)
        except ValidationError as exc:
            raise config_error_from_pydantic(exc.errors(), prefix="args") from None

    def covers(self, node: PowerTarget) -> bool:
        """Listed nodes (a missing BMC is then an error at use); with no list, the nodes
        that have a BMC."""
        if self.config.nodes:
            return super().covers(node)
        return node.bmc is not None

    def bmc(self, node: PowerTarget) -> Bmc:
        spec = node.bmc
        if spec is None:
            raise ConfigError(
                f"nodes[{node.fqdn}].bmc", "no BMC configured", "give the node a bmc: address"
            )
        username = spec.username or self.args.username
        password_file = spec.password_file or self.args.password_file
        if not username or not password_file:
            missing = "username" if not username else "passwordFile"
            raise ConfigError(
                f"nodes[{node.fqdn}].bmc.{missing}",
                "missing",
                f"set it on the node's bmc or as args.{missing} of the ipmi power backend",
            )
        return Bmc(node.fqdn, spec.address, spec.port or self.args.port, username, password_file)

    async def _run(self, node: PowerTarget, op: Callable[[_Session], T]) -> T:
        bmc = self.bmc(node)

        def blocking() -> T:
            with _bmc_lock(bmc):
                session = _Session(bmc, self.args.retries)
                try:
                    return op(session)
                finally:
                    session.close()

        result: T = await self.in_thread(blocking)
        return result

    async def state(self, node: PowerTarget) -> PowerState:
        return await self._run(node, lambda s: s.state())

    async def power_off(self, node: PowerTarget) -> str:
        def op(s: _Session) -> str:
            if s.state() == PowerState.OFF:
                return f"{node.fqdn} already off ({s.bmc.where})"
            s.request("off")
            took = s.wait(PowerState.OFF, self.args.timeout, "a power down request")
            return f"powered off {node.fqdn} through {s.bmc.where} ({took:.1f} s)"

        return await self._run(node, op)

    async def power_on(self, node: PowerTarget) -> str:
        def op(s: _Session) -> str:
            if s.state() == PowerState.ON:
                return f"{node.fqdn} already on ({s.bmc.where})"
            s.request("on")
            took = s.wait(PowerState.ON, self.args.timeout, "a power up request")
            return f"powered on {node.fqdn} through {s.bmc.where} ({took:.1f} s)"

        return await self._run(node, op)

    async def reset(self, node: PowerTarget) -> str:
        def op(s: _Session) -> str:
            if s.state() == PowerState.OFF:
                s.request("on")
                took = s.wait(PowerState.ON, self.args.timeout, "a power up request")
                return f"{node.fqdn} was off: powered on through {s.bmc.where} ({took:.1f} s)"
            s.request("reset", retry_unanswered=False)
            return f"reset {node.fqdn} through {s.bmc.where}"

        return await self._run(node, op)

    async def shutdown(self, node: PowerTarget) -> str:
        def op(s: _Session) -> str:
            if s.state() == PowerState.OFF:
                return f"{node.fqdn} already off ({s.bmc.where})"
            s.request("shutdown")
            took = s.wait(PowerState.OFF, self.args.timeout, "a soft-off (ACPI) request")
            return f"shut down {node.fqdn} through {s.bmc.where} ({took:.1f} s)"

        return await self._run(node, op)

"""SSH transport: one pooled asyncssh connection per node, bounded concurrency.

Host keys are verified against known_hosts unless `insecureSkipHostKeyCheck: true` is written
out. Passwords are read from files and never logged; errors name the node, not the secret.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from faultline.models.config import SshConfig
from faultline.models.errors import HostKeyError, NodeUnreachableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SshTarget:
    name: str
    host: str
    port: int
    user: str


@dataclass(frozen=True)
class CommandResult:
    exit_status: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe(self) -> str:
        text = (self.stderr.strip() or self.stdout.strip())[-500:]
        return f"exit status {self.exit_status}: {text}" if text else f"exit {self.exit_status}"


class CommandTimeoutError(NodeUnreachableError):
    pass


def _read_secret(path: str, field: str) -> str:
    try:
        return Path(path).expanduser().read_text().rstrip("\n")
    except OSError as exc:
        raise NodeUnreachableError(f"cannot read {field} file {path}: {exc.strerror}") from None


class SshPool:
    """Keeps one connection per (host, port, user); reconnects once when a connection died."""

    def __init__(self, config: SshConfig) -> None:
        self._config = config
        self._conns: dict[tuple[str, int, str], asyncssh.SSHClientConnection] = {}
        self._locks: dict[tuple[str, int, str], asyncio.Lock] = {}
        self._jump: asyncssh.SSHClientConnection | None = None
        self._jump_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._known_hosts_cache: Any = None

    def _known_hosts(self) -> Any:
        """Parsed once per pool: asyncssh would re-read and re-parse the file for every
        connection (40,000 key parses for 200 nodes)."""
        if self._known_hosts_cache is None:
            path = Path(str(self._config.known_hosts_file)).expanduser()
            try:
                self._known_hosts_cache = asyncssh.read_known_hosts(str(path))
            except (OSError, ValueError) as exc:
                raise NodeUnreachableError(
                    f"cannot read ssh.knownHostsFile {path}: {exc}"
                ) from None
        return self._known_hosts_cache

    def _connect_options(self) -> dict[str, Any]:
        cfg = self._config
        options: dict[str, Any] = {
            "connect_timeout": cfg.connect_timeout,
            "keepalive_interval": 15,
            "agent_path": None,
        }
        if cfg.insecure_skip_host_key_check:
            options["known_hosts"] = None
        elif cfg.known_hosts_file:
            options["known_hosts"] = self._known_hosts()
        if cfg.private_key_file:
            options["client_keys"] = [str(Path(cfg.private_key_file).expanduser())]
        if cfg.password_file:
            options["password"] = _read_secret(cfg.password_file, "ssh.passwordFile")
        return options

    async def _tunnel(self) -> asyncssh.SSHClientConnection | None:
        jump = self._config.jump_host
        if jump is None:
            return None
        async with self._jump_lock:
            if self._jump is None or self._jump.is_closed():
                options = self._connect_options()
                if jump.private_key_file:
                    options["client_keys"] = [str(Path(jump.private_key_file).expanduser())]
                self._jump = await asyncssh.connect(
                    jump.host, port=jump.port, username=jump.user or self._config.user, **options
                )
            return self._jump

    async def _connection(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        key = (target.host, target.port, target.user)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and not conn.is_closed():
                return conn
            try:
                conn = await asyncssh.connect(
                    target.host,
                    port=target.port,
                    username=target.user,
                    tunnel=await self._tunnel(),
                    **self._connect_options(),
                )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostKeyError(
                    f"{target.name} ({target.host}): host key not trusted ({exc.reason}); add the "
                    "node's key to ssh.knownHostsFile, or set insecureSkipHostKeyCheck: true"
                ) from None
            except asyncssh.PermissionDenied:
                raise NodeUnreachableError(
                    f"{target.name} ({target.host}): authentication as {target.user!r} refused"
                ) from None
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                raise NodeUnreachableError(
                    f"{target.name} ({target.host}:{target.port}): cannot connect: {reason}"
                ) from None
            self._conns[key] = conn
            return conn

    def _wrap(self, target: SshTarget, command: str) -> tuple[str, str]:
        """The command line to run, and what its stdin must start with (the become password)."""
        cfg = self._config
        if not cfg.become or target.user == "root":
            return command, ""
        if not cfg.become_password_file:
            # -n: fail at once if sudo wants a password, rather than take the command's stdin
            # (a script) for password attempts, or wait for a password that never comes.
            return "sudo -n sh -c " + shlex.quote(command), ""
        secret = _read_secret(cfg.become_password_file, "ssh.becomePasswordFile")
        # sudo -S reads the password line only when it asks for one: not under a NOPASSWD rule
        # nor with cached credentials. Then the line is still there, and a script read from
        # stdin would run the password as a command (and echo it in an error). So a fence line
        # follows it, and the command first skips everything up to the fence.
        fence = secrets.token_hex(8)
        skip = f'IFS= read -r _l; [ "$_l" = {fence} ] || IFS= read -r _l; unset _l; '
        return "sudo -S -p '' sh -c " + shlex.quote(skip + command), f"{secret}\n{fence}\n"

    async def connect(self, target: SshTarget) -> None:
        async with self._slots:
            await self._connection(target)

    async def run(
        self,
        target: SshTarget,
        command: str,
        *,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run a shell command on the node. Raises NodeUnreachableError if it cannot."""
        limit = timeout or self._config.command_timeout
        wrapped, prefix = self._wrap(target, command)
        if prefix:
            stdin = prefix + (stdin or "")
        async with self._slots:
            for attempt in (1, 2):
                conn = await self._connection(target)
                try:
                    done = await conn.run(wrapped, check=False, timeout=limit, input=stdin)
                except asyncssh.ChannelOpenError:
                    self._drop(target)
                    if attempt == 2:
                        raise NodeUnreachableError(
                            f"{target.name} ({target.host}): connection lost"
                        ) from None
                    continue
                except (asyncssh.TimeoutError, TimeoutError):
                    raise CommandTimeoutError(
                        f"{target.name} ({target.host}): command timed out after {limit:g} s"
                    ) from None
                except (OSError, asyncssh.Error) as exc:
                    self._drop(target)
                    if attempt == 2:
                        raise NodeUnreachableError(
                            f"{target.name} ({target.host}): {exc or type(exc).__name__}"
                        ) from None
                    continue
                return CommandResult(done.exit_status, _text(done.stdout), _text(done.stderr))
        raise AssertionError("unreachable")

    def _drop(self, target: SshTarget) -> None:
        conn = self._conns.pop((target.host, target.port, target.user), None)
        if conn is not None:
            conn.abort()

    def forget(self, target: SshTarget) -> None:
        """Drop a node's connection, e.g. after it rebooted, so the next call reconnects."""
        self._drop(target)

    async def close(self) -> None:
        conns = [*self._conns.values()]
        if self._jump is not None:
            conns.append(self._jump)
        self._conns.clear()
        self._jump = None
        for conn in conns:
            conn.close()
        for conn in conns:
            try:
                await asyncio.wait_for(conn.wait_closed(), 2)
            except (TimeoutError, OSError, asyncssh.Error):
                conn.abort()


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)

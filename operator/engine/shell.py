"""Running commands on one node on behalf of a fault, with errors that say what failed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from faultline.drivers.power import PowerBackend, PowerTarget
from faultline.drivers.ssh import CommandResult, SshPool, SshTarget
from faultline.engine.nodes import Node
from faultline.models.config import CloudConfig
from faultline.models.errors import FaultlineError, NodeUnreachableError

#: A shell function: true while any of the given pids runs; a zombie (state Z, waiting to be
#: reaped) counts as dead. Builtins only: no fork per check.
ALIVE = (
    'alive() { for p in "$@"; do read -r l < "/proc/$p/stat" 2>/dev/null || continue; '
    's=${l##*) }; [ "${s%% *}" != Z ] && return 0; done; return 1; }'
)


class CommandFailedError(FaultlineError):
    pass


def ssh_target(node: Node, config: CloudConfig) -> SshTarget:
    return SshTarget(
        name=node.fqdn,
        host=node.ip,
        port=node.ssh_port or config.ssh.port,
        user=node.ssh_user or config.ssh.user,
    )


@dataclass
class NodeShell:
    """A node as a fault handler sees it: commands over SSH, and its power backend if any."""

    node: Node
    target: SshTarget
    pool: SshPool
    power: PowerBackend | None = None

    @property
    def power_target(self) -> PowerTarget:
        n = self.node
        return PowerTarget(n.fqdn, n.ip, n.mac, n.bmc, dict(n.labels))

    async def run(
        self, command: str, timeout: float | None = None, inline: bool = False
    ) -> CommandResult:
        """Run a script on the node.

        Scripts travel on stdin: the node's process list then shows `sh -s`, never the
        script, so a `pgrep -f memcached` inside it cannot match the shell running it.
        `inline` sends a command that looks for no process on the command line (saves ~2 ms).
        """
        if inline:
            return await self.pool.run(self.target, command, timeout=timeout)
        return await self.pool.run(self.target, "sh -s", timeout=timeout, stdin=command)

    async def check(self, command: str, what: str, timeout: float | None = None) -> str:
        """Run and require exit 0; returns stdout."""
        result = await self.run(command, timeout=timeout)
        if not result.ok:
            raise CommandFailedError(f"{what}: {result.describe()}")
        return result.stdout

    async def wait_for(self, condition: str, what: str, timeout: float = 30.0) -> None:
        """Poll `condition` on the node itself, so waiting costs one round trip."""
        tries = max(1, int(timeout / 0.1))
        script = (
            f"i=0; while [ $i -lt {tries} ]; do if {condition}; then exit 0; fi; "
            "sleep 0.1; i=$((i+1)); done; exit 1"
        )
        result = await self.run(script, timeout=timeout + 10)
        if not result.ok:
            raise CommandFailedError(f"timed out after {timeout:g} s waiting until {what}")

    async def observe_act_wait(
        self, observe: str, act: str, condition: str, what: str, timeout: float = 30.0
    ) -> tuple[list[str], str | None]:
        """Observe, act and verify in one round trip; returns (observed words, error).

        `act` may use `$obs`, the output of `observe`. The error is None when `condition`
        came true within `timeout` after the action.
        """
        # Poll fast at first (most effects land within milliseconds), then every 50 ms.
        tries = 20 + max(1, int((timeout - 0.1) / 0.05))
        script = (
            f"{ALIVE}; obs=$({observe}); printf '%s\\n' \"$obs\"; echo --; "
            f"{{ {act}; }} >&2 || exit 3; "
            f"i=0; d=0.005; until {condition}; do i=$((i+1)); [ $i -eq 20 ] && d=0.05; "
            f"[ $i -ge {tries} ] && exit 124; sleep $d; done"
        )
        result = await self.run(script, timeout=timeout + 15)
        observed = result.stdout.split("\n--\n", 1)[0].split()
        if result.exit_status == 3:
            return observed, f"{what}: {result.describe()}"
        if result.exit_status == 124:
            return observed, f"timed out after {timeout:g} s waiting until {what}"
        if not result.ok:
            return observed, f"{what}: {result.describe()}"
        return observed, None

    def forget(self) -> None:
        self.pool.forget(self.target)

    async def reachable_value(self, command: str, timeout: float = 5.0) -> str | None:
        """stdout of `command`, or None while the node does not answer."""
        self.forget()
        try:
            result = await self.run(command, timeout=timeout)
        except NodeUnreachableError:
            self.forget()
            return None
        return result.stdout.strip() if result.ok else None

    async def poll_value(
        self, command: str, until: str, timeout: float, interval: float = 0.3
    ) -> str | None:
        """Reconnect and read `command` until `until` ('gone', 'changed:<old>') holds."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.reachable_value(command)
            if until == "gone" and value is None:
                return None
            if until.startswith("changed:") and value is not None and value != until[8:]:
                return value
            if time.monotonic() >= deadline:
                raise CommandFailedError(
                    f"timed out after {timeout:g} s waiting for {self.node.fqdn} to "
                    + ("stop answering" if until == "gone" else "come back with a new boot id")
                )
            await asyncio.sleep(interval)

"""The lab supervisor: a detached daemon per lab that owns the nodes' power.

It is the parent of every node's `unshare`, so it sees how a node's init ended: SIGHUP means
the node called reboot(2) (boot it again), SIGINT means poweroff (keep it off), anything else
is a power cut (SIGKILL from `power off`, a crash). It serves power requests on a Unix socket
in the state dir and is the only writer of state.json while it runs.

Run as ``python -m faultline.lab.supervisor --state-dir DIR`` (started by `lab up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from faultline.lab import node as lab_node
from faultline.lab.control import BOOT_TIMEOUT, OFF_TIMEOUT, SOCKET_NAME, socket_path
from faultline.lab.state import LabNode, LabState, load_state, save_state
from faultline.lab.system import NODE_ENV, LabError, ProcessId, children

PROBE_INTERVAL = 0.01
log = logging.getLogger("faultline.lab.supervisor")


def describe_exit(rc: int) -> str:
    if rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    return f"exited with status {rc}"


class NodeRunner:
    """Power state machine of one node: off -> booting -> on, and back to off or booting."""

    def __init__(self, supervisor: Supervisor, node: LabNode) -> None:
        self.supervisor = supervisor
        self.node = node
        self.lock = asyncio.Lock()
        self.changed = asyncio.Condition()
        self.want_off = False
        self.failure: str | None = None
        self.init: ProcessId | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        node.power, node.init_pid, node.init_start = "off", None, None

    async def _set(self, power: str) -> None:
        self.node.power = power
        self.supervisor.save()
        async with self.changed:
            self.changed.notify_all()

    async def power_on(self, timeout: float) -> str:
        async with self.lock:
            if self.node.power == "off":
                self.want_off = False
                await self._boot()
        return await self.wait_up(timeout)

    async def wait_up(self, timeout: float) -> str:
        async def settled() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: self.node.power in ("on", "off"))

        try:
            await asyncio.wait_for(settled(), timeout)
        except TimeoutError:
            raise LabError(f"{self.node.name}: not up after {timeout:g} s") from None
        if self.node.power == "off":
            reason = self.failure or "powered off while booting"
            raise LabError(f"{self.node.name}: {reason}")
        return "on"

    async def power_off(self) -> str:
        async with self.lock:
            if self.node.power == "off":
                return "off"
            self.want_off = True
            if self.init is not None:
                self.init.kill()
            # Without an init (mid-reboot) the boot in progress sees want_off and kills it.

            async def off() -> None:
                async with self.changed:
                    await self.changed.wait_for(lambda: self.node.power == "off")

            try:
                await asyncio.wait_for(off(), OFF_TIMEOUT)
            except TimeoutError:
                raise LabError(
                    f"{self.node.name}: still running {OFF_TIMEOUT:g} s after SIGKILL"
                ) from None
        return "off"

    async def reset(self, timeout: float) -> str:
        await self.power_off()
        return await self.power_on(timeout)

    async def _boot(self) -> None:
        node = self.node
        self.failure = None
        await self._set("booting")
        # After a power cycle the host's neighbour entry may be FAILED; start afresh.
        await _quiet("ip", "neigh", "del", node.ip, "dev", self.supervisor.state.bridge)
        console = open(Path(node.node_dir) / "console.log", "ab")  # noqa: SIM115
        try:
            proc = await asyncio.create_subprocess_exec(
                *lab_node.boot_argv(node, self.supervisor.bin_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=console,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(NODE_ENV),
                cwd="/",
            )
        finally:
            console.close()
        self.init = await self._find_init(proc)
        node.init_pid = self.init.pid if self.init else None
        node.init_start = self.init.start if self.init else None
        node.boots += 1
        log.info("%s: booting (boot %d, init pid %s)", node.name, node.boots, node.init_pid)
        self.supervisor.save()
        self._spawn(self._watch(proc))
        if self.init is None:
            if proc.returncode is None:
                proc.kill()  # no init to control: cut this boot short rather than lose track
        elif self.want_off:
            self.init.kill()  # powered off while this boot was starting
        else:
            self._spawn(self._probe(self.init))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _find_init(proc: asyncio.subprocess.Process) -> ProcessId | None:
        """The node's PID 1 (tini) is the child `unshare --fork` makes."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.returncode is None:
            kids = children(proc.pid)
            if kids:
                return ProcessId.of(kids[0])
            await asyncio.sleep(0.002)
        return None

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        rc = await proc.wait()
        node = self.node
        self.init = None
        node.init_pid = node.init_start = None
        await _quiet("ip", "-n", node.netns, "link", "set", "eth0", "down")
        await _quiet("ip", "-n", node.netns, "link", "set", "eth1", "down")
        if not self.want_off and rc == -signal.SIGHUP:
            log.info("%s: rebooted from inside", node.name)
            await self._boot()
            return
        if self.want_off:
            log.info("%s: powered off", node.name)
        elif rc == -signal.SIGINT:
            log.info("%s: powered off from inside", node.name)
        else:
            self.failure = f"node init {describe_exit(rc)} (see {node.node_dir}/console.log)"
            log.warning("%s: %s", node.name, self.failure)
        await self._set("off")

    async def _probe(self, init: ProcessId) -> None:
        """This boot is up once the node's init says so and its sshd answers from the host.

        Probing only after the node's links are up keeps the first ARP request from going
        unanswered (the kernel would retry only a second later).
        """
        node = self.node

        def booting() -> bool:  # and still this boot, not a later one
            return self.init == init and node.power == "booting"

        deadline = time.monotonic() + BOOT_TIMEOUT
        ready = Path(f"/proc/{init.pid}/root/run/faultline-lab/ready")
        while booting() and not ready.exists() and time.monotonic() < deadline:
            await asyncio.sleep(PROBE_INTERVAL)
        while booting():
            if time.monotonic() > deadline:
                self.failure = f"SSH on {node.ip} did not answer within {BOOT_TIMEOUT:g} s"
                log.warning("%s: %s", node.name, self.failure)
                self.want_off = True
                init.kill()
                return
            if await ssh_answers(node.ip, timeout=1.0):
                if booting():
                    log.info("%s: up", node.name)
                    await self._set("on")
                return
            await asyncio.sleep(PROBE_INTERVAL)

    def status(self) -> dict[str, Any]:
        return {
            "power": self.node.power,
            "boots": self.node.boots,
            "init_pid": self.node.init_pid,
            "failure": self.failure,
        }


async def ssh_answers(ip: str, timeout: float) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, 22), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        banner = await asyncio.wait_for(reader.read(64), timeout)
        return banner.startswith(b"SSH-")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def _quiet(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        state = load_state(state_dir)
        if state is None:
            raise LabError(f"no lab state in {state_dir}")
        self.state_dir = state_dir
        self.state: LabState = state
        self.bin_dir = state_dir / lab_node.BIN_DIR
        self.runners = {n.name: NodeRunner(self, n) for n in state.nodes}
        self.stopping = asyncio.Event()

    def save(self) -> None:
        save_state(self.state)

    async def run(self) -> None:
        me = ProcessId.of(os.getpid())
        assert me is not None
        self.state.supervisor_pid, self.state.supervisor_start = me.pid, me.start
        self.save()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        with socket_path(self.state_dir) as path:
            server = await asyncio.start_unix_server(self._serve, path=path)
        log.info("supervisor %d up for lab %d", me.pid, self.state.index)
        for runner in self.runners.values():
            runner._spawn(self._boot_quietly(runner))
        await self.stopping.wait()
        server.close()
        await self._all_off()
        (self.state_dir / SOCKET_NAME).unlink(missing_ok=True)
        self.state.supervisor_pid = self.state.supervisor_start = None
        self.save()
        log.info("supervisor stopped")

    @staticmethod
    async def _boot_quietly(runner: NodeRunner) -> None:
        try:
            await runner.power_on(BOOT_TIMEOUT)
        except LabError as exc:
            log.warning("%s", exc)

    async def _all_off(self) -> None:
        await asyncio.gather(*(r.power_off() for r in self.runners.values()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            answer = await self._dispatch(request)
        except (LabError, ValueError, KeyError, TypeError) as exc:
            answer = {"ok": False, "error": str(exc)}
        try:
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
        if answer.get("stopped"):
            self.stopping.set()

    def _runner(self, name: str) -> NodeRunner:
        return self.runners[self.state.node(name).name]

    async def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        timeout = float(request.get("timeout", BOOT_TIMEOUT))
        if command == "ping":
            return {"ok": True, "pid": os.getpid()}
        if command == "status":
            return {"ok": True, "nodes": {n: r.status() for n, r in self.runners.items()}}
        if command == "wait":
            if "node" in request:
                return {"ok": True, "power": await self._runner(request["node"]).wait_up(timeout)}
            await asyncio.gather(*(r.wait_up(timeout) for r in self.runners.values()))
            return {"ok": True}
        if command == "power":
            runner = self._runner(str(request["node"]))
            action = request.get("action")
            if action != "status":
                log.info("%s: power %s requested", runner.node.name, action)
            if action == "on":
                return {"ok": True, "power": await runner.power_on(timeout)}
            if action == "off":
                return {"ok": True, "power": await runner.power_off()}
            if action == "reset":
                return {"ok": True, "power": await runner.reset(timeout)}
            if action == "status":
                return {"ok": True, "power": runner.node.power}
            raise LabError(f"unknown power action {action!r} (on, off, reset, status)")
        if command == "stop":
            await self._all_off()
            return {"ok": True, "stopped": True}
        raise LabError(f"unknown command {command!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="faultline.lab.supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    asyncio.run(Supervisor(args.state_dir.resolve()).run())


if __name__ == "__main__":
    main()

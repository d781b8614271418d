"""Lab add-on `libvirt`: a private libvirtd (test driver over TCP) mirrored onto lab nodes.

`up` installs what is missing (Debian libvirt-daemon-system, libvirt-dev, pkg-config, gcc;
libvirt-python into the running interpreter), starts a libvirtd of its own bound to
127.0.0.1 on a free port -- its config, sockets, pid file and log in the add-on directory,
no connection drivers loaded (`LIBVIRT_DRIVER_DIR` points at an empty directory, so no
QEMU, networks or firewall rules touch the host), no authentication on loopback -- and a
listener process. Clients use `test+tcp://127.0.0.1:PORT/default`.

The listener holds the connection that keeps the test driver's state alive (a test+tcp
libvirtd shares one state between clients only while a connection stays open), defines one
running domain per lab node (name = fqdn, a UUID and a MAC of its own) and keeps both sides
in step:

- libvirt -> lab: domain stopped after destroy -> power the node off; stopped after a
  graceful shutdown -> the node powers itself off (its `poweroff`), hard off if it does not
  within SHUTDOWN_GRACE; started -> power on. The test driver emits no event for reset and
  reboot, so the listener follows libvirtd's debug log of the `virDomainReset` and
  `virDomainReboot` API calls: reset -> hard reset of the node, reboot -> its `reboot`.
- lab -> libvirt: a node powered off or on by anyone else (another add-on, a fault from
  inside, `reset_state`) gets its domain destroyed or started, so libvirt reports the truth.

`down` stops both processes (idempotent) and removes the directory. The add-on returns
`{"power": [{"driver": "libvirt", "args": {"uri": ...}}], "nodes": {fqdn: {"mac": ...}}}`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from faultline.lab import packages
from faultline.lab.addons import addon_dir
from faultline.lab.state import load_state
from faultline.lab.system import NODE_ENV, LabError, ProcessId, run

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

NAME = "libvirt"
PACKAGES = ("libvirt-daemon-system", "libvirt-dev", "pkg-config", "gcc")
LIBVIRT_PYTHON = "libvirt-python==12.8.0"
LIBVIRTD = "/usr/sbin/libvirtd"  # Debian's path
PROCESSES = "processes.json"
DOMAINS = "domains.json"
READY = "ready"
URI_FILE = "uri"
LOG = "libvirtd.log"
LISTENER_LOG = "listener.log"
LISTENER_MODULE = "faultline.lab.addon_libvirt"
START_TIMEOUT = 30.0
POLL = 0.1
SHUTDOWN_GRACE = 15.0
#: What the listener follows in libvirtd's log: API calls the test driver has no event for.
_API_CALL = re.compile(
    r"\bvirDomain(?P<call>Reset|Reboot):\d+ : dom=\S+, \(VM: name=.*?, "
    r"uuid=(?P<uuid>[0-9a-f-]{36})\)"
)
# Lifecycle event numbers (libvirt's virDomainEventType / detail), as the listener sees them.
EVENT_STARTED = 2
EVENT_STOPPED = 5
STOPPED_SHUTDOWN = 0

log = logging.getLogger("faultline.lab.libvirt")


# -- installing --------------------------------------------------------------------------------


def ensure_python(module: str, requirement: str, timeout: float = 900.0) -> bool:
    """pip-install `requirement` into the running interpreter unless `module` imports;
    True when it installed something."""
    if importlib.util.find_spec(module) is not None:
        return False
    run([sys.executable, "-m", "pip", "install", "-q", requirement], timeout=timeout)
    importlib.invalidate_caches()
    if importlib.util.find_spec(module) is None:
        raise LabError(f"pip installed {requirement} but `import {module}` still fails")
    return True


def ensure_installed() -> None:
    packages.ensure(PACKAGES)
    ensure_python("libvirt", LIBVIRT_PYTHON)


# -- files and processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    node: str  # lab node name
    fqdn: str
    name: str  # domain name
    uuid: str
    mac: str


def state_root(lab: Lab) -> Path:
    """The add-on's directory, without creating it (down must not)."""
    return lab.state_dir / "addons" / NAME


def uri(lab: Lab) -> str | None:
    """The libvirt URI of the lab's libvirtd, when the add-on is up."""
    path = state_root(lab) / URI_FILE
    return path.read_text().strip() if path.is_file() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def record_process(directory: Path, name: str, proc: ProcessId) -> None:
    path = directory / PROCESSES
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = {"pid": proc.pid, "start": proc.start}
    path.write_text(json.dumps(data, indent=2) + "\n")


def recorded_processes(directory: Path) -> dict[str, ProcessId]:
    path = directory / PROCESSES
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: ProcessId(int(v["pid"]), int(v["start"])) for k, v in data.items()}


def stop_process(proc: ProcessId, timeout: float = 5.0) -> None:
    if proc.kill(signal.SIGTERM) and proc.wait_gone(timeout):
        return
    proc.kill(signal.SIGKILL)
    proc.wait_gone(timeout)


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def libvirtd_conf(directory: Path, port: int) -> str:
    return f"""\
# Faultline lab: a private libvirtd for the test driver; written by the libvirt add-on.
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "{port}"
auth_tcp = "none"
unix_sock_dir = "{directory / "run"}"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
max_clients = 200
# Debug lines of the public domain API: the listener follows reset and reboot calls here.
log_filters = "1:libvirt.domain"
log_outputs = "1:file:{directory / LOG}"
"""


def domain_xml(domain: Domain) -> str:
    return f"""\
<domain type='test'>
  <name>{escape(domain.name)}</name>
  <uuid>{domain.uuid}</uuid>
  <title>Faultline lab node {escape(domain.node)}</title>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <interface type='network'>
      <mac address='{domain.mac}'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>
"""


def plan_domains(lab: Lab) -> list[Domain]:
    state = lab.state()
    return [
        Domain(
            node=n.name,
            fqdn=n.fqdn,
            name=n.fqdn,
            uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"faultline-lab:{lab.state_dir}:{n.fqdn}")),
            mac=f"52:54:00:fa:{state.index % 256:02x}:{i + 1:02x}",
        )
        for i, n in enumerate(state.nodes)
    ]


def _start_libvirtd(directory: Path) -> tuple[ProcessId, int]:
    (directory / "run").mkdir(mode=0o700, exist_ok=True)
    drivers = directory / "drivers"  # empty on purpose: no QEMU, network, storage drivers
    drivers.mkdir(mode=0o755, exist_ok=True)
    env = {**NODE_ENV, "LIBVIRT_DRIVER_DIR": str(drivers)}
    pid_file = directory / "libvirtd.pid"
    error = ""
    for _ in range(3):  # a free port may be taken before libvirtd binds it
        port = free_port()
        conf = directory / "libvirtd.conf"
        conf.write_text(libvirtd_conf(directory, port))
        pid_file.unlink(missing_ok=True)
        argv = [LIBVIRTD, "-f", str(conf), "-p", str(pid_file), "-l", "-d"]
        result = run(argv, env=env, check=False, timeout=START_TIMEOUT)
        if result.returncode == 0 and pid_file.is_file():
            proc = ProcessId.of(int(pid_file.read_text().strip()))
            if proc is not None:
                _wait_port(port, proc, directory)
                return proc, port
        error = (result.stderr or result.stdout).strip() or tail(directory / LOG)
    raise LabError(f"libvirtd did not start: {error}")


def _wait_port(port: int, proc: ProcessId, directory: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if not proc.alive():
            raise LabError(f"libvirtd exited at start:\n{tail(directory / LOG)}")
        if time.monotonic() > deadline:
            raise LabError(f"libvirtd does not listen on 127.0.0.1:{port}")
        time.sleep(POLL)


def _start_listener(lab: Lab, directory: Path) -> ProcessId:
    with open(directory / LISTENER_LOG, "ab") as out:
        # -P: the source directory is called `operator`, like the stdlib module.
        child = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "faultline.lab.addon_libvirt",
                "--state-dir",
                str(lab.state_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
    proc = ProcessId.of(child.pid)
    if proc is None:
        raise LabError(f"the libvirt listener exited at start:\n{tail(directory / LISTENER_LOG)}")
    return proc


def _wait_ready(directory: Path, listener: ProcessId) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not (directory / READY).is_file():
        if not listener.alive():
            raise LabError(f"the libvirt listener failed:\n{tail(directory / LISTENER_LOG)}")
        if time.monotonic() > deadline:
            raise LabError(
                f"the libvirt listener is not ready after {START_TIMEOUT:g} s:\n"
                f"{tail(directory / LISTENER_LOG)}"
            )
        time.sleep(POLL)


class LibvirtAddon:
    def up(self, lab: Lab) -> dict[str, Any]:
        ensure_installed()
        self.down(lab)  # leftovers of an earlier run
        directory = addon_dir(lab, NAME)
        domains = plan_domains(lab)
        (directory / DOMAINS).write_text(json.dumps([asdict(d) for d in domains], indent=2))
        libvirtd, port = _start_libvirtd(directory)
        record_process(directory, "libvirtd", libvirtd)
        the_uri = f"test+tcp://127.0.0.1:{port}/default"
        (directory / URI_FILE).write_text(the_uri + "\n")
        listener = _start_listener(lab, directory)
        record_process(directory, "listener", listener)
        _wait_ready(directory, listener)
        return {
            "power": [{"driver": "libvirt", "args": {"uri": the_uri}}],
            "nodes": {d.fqdn: {"mac": d.mac} for d in domains},
        }

    def down(self, lab: Lab) -> None:
        directory = state_root(lab)
        if not directory.is_dir():
            return
        procs = recorded_processes(directory)
        for name in ("listener", "libvirtd"):
            if name in procs:
                stop_process(procs[name])
        shutil.rmtree(directory, ignore_errors=True)


ADDON = LibvirtAddon()


# -- the listener (a process of its own: python -m faultline.lab.addon_libvirt) ----------------


class Listener:
    """Keeps the test driver's state alive and libvirt and the lab nodes in step."""

    def __init__(self, state_dir: Path) -> None:
        from faultline.lab.lab import Lab

        self.state_dir = state_dir
        self.lab = Lab.load(state_dir)
        self.directory = state_dir / "addons" / NAME
        self.domains = [Domain(**d) for d in json.loads((self.directory / DOMAINS).read_text())]
        self.by_uuid = {d.uuid: d for d in self.domains}
        self.uri = (self.directory / URI_FILE).read_text().strip()
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.expected: Counter[tuple[str, str]] = Counter()  # events we caused ourselves
        self.known: dict[str, str] = {}  # uuid -> lab power as last seen or set by us
        self.libvirt: Any = importlib.import_module("libvirt")
        self.conn: Any = None
        self._log_file: Any = None
        self._partial = ""

    # setup

    def setup(self) -> None:
        lv = self.libvirt
        lv.registerErrorHandler(lambda _ctx, _err: None, None)
        lv.virEventRegisterDefaultImpl()
        self.conn = lv.open(self.uri)
        self.conn.setKeepAlive(5, 3)
        ours = {d.uuid for d in self.domains}
        for dom in self.conn.listAllDomains(0):  # the test driver's sample domain
            if dom.UUIDString() not in ours:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        power = self.lab_power()
        for d in self.domains:
            try:
                dom = self.conn.lookupByUUIDString(d.uuid)
            except lv.libvirtError:
                dom = self.conn.defineXML(domain_xml(d))
            on = power.get(d.node, "off") != "off"
            if on and not dom.isActive():
                dom.create()
            elif not on and dom.isActive():
                dom.destroy()
            self.known[d.uuid] = "on" if on else "off"
        self._log_file = open(self.directory / LOG, errors="replace")  # noqa: SIM115
        self._log_file.seek(0, 2)  # only calls from now on
        self.conn.domainEventRegisterAny(
            None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )
        self.conn.registerCloseCallback(self._on_close, None)
        threading.Thread(target=self._event_loop, daemon=True, name="libvirt-events").start()
        log.info("libvirt %s: %d domains for the lab nodes", self.uri, len(self.domains))

    def _event_loop(self) -> None:
        while True:
            self.libvirt.virEventRunDefaultImpl()

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self.events.put(("lifecycle", dom.UUIDString(), event, detail))

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self.events.put(("closed", reason))

    # the lab side

    def lab_power(self) -> dict[str, str]:
        try:
            state = load_state(self.state_dir)
        except LabError:
            return {}
        if state is None:
            return {}
        return {n.name: ("off" if n.power == "off" else "on") for n in state.nodes}

    def lab_alive(self) -> bool:
        with contextlib.suppress(LabError):
            state = load_state(self.state_dir)
            supervisor = state.supervisor if state is not None else None
            return supervisor is not None and supervisor.alive()
        return False

    def power(self, d: Domain, action: str) -> None:
        log.info("%s: lab power %s", d.node, action)
        try:
            self.known[d.uuid] = "off" if self.lab.power(d.node, action) == "off" else "on"
        except LabError as exc:
            log.warning("%s: lab power %s failed: %s", d.node, action, exc)
            self.known[d.uuid] = self.lab_power().get(d.node, "off")

    def graceful(self, d: Domain, command: str, then: str) -> None:
        """Ask the node to `poweroff`/`reboot` itself; power it `then` if it does not."""
        log.info("%s: %s inside the node", d.node, command)
        asked = False
        with contextlib.suppress(LabError, OSError, subprocess.SubprocessError):
            asked = self.lab.exec(d.node, [command], timeout=10).returncode == 0
        if command == "poweroff" and asked:
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while time.monotonic() < deadline:
                if self.lab_power().get(d.node) == "off":
                    self.known[d.uuid] = "off"
                    return
                time.sleep(POLL)
        elif asked:
            return
        self.power(d, then)

    # the libvirt side

    def handle(self, item: tuple[Any, ...]) -> None:
        if item[0] == "closed":
            raise SystemExit(f"libvirtd closed the connection (reason {item[1]})")
        _, the_uuid, event, detail = item
        d = self.by_uuid.get(the_uuid)
        if d is None or event not in (EVENT_STARTED, EVENT_STOPPED):
            return
        want = "on" if event == EVENT_STARTED else "off"
        if self.expected[(the_uuid, want)] > 0:
            self.expected[(the_uuid, want)] -= 1
            return
        log.info(
            "%s: domain %s (event %d/%d)",
            d.node,
            "started" if want == "on" else "stopped",
            event,
            detail,
        )
        current = self.lab_power().get(d.node, "off")
        if want == "on" and current == "off":
            self.power(d, "on")
        elif want == "off" and current != "off":
            if detail == STOPPED_SHUTDOWN:
                self.graceful(d, "poweroff", "off")
            else:
                self.power(d, "off")
        else:
            self.known[d.uuid] = current

    def follow_log(self) -> None:
        if self._log_file is None:
            return
        chunk = self._log_file.read()
        if not chunk:
            return
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            found = _API_CALL.search(line)
            d = self.by_uuid.get(found.group("uuid")) if found else None
            if found is None or d is None:
                continue
            try:
                active = bool(self.conn.lookupByUUIDString(d.uuid).isActive())
            except self.libvirt.libvirtError:
                continue
            if not active or self.lab_power().get(d.node) == "off":
                continue
            if found.group("call") == "Reset":
                self.power(d, "reset")
            else:
                self.graceful(d, "reboot", "reset")

    def reconcile(self) -> None:
        """Follow lab power changes made by others onto the domains."""
        power = self.lab_power()
        for d in self.domains:
            now = power.get(d.node)
            if now is None or now == self.known.get(d.uuid):
                continue
            self.known[d.uuid] = now
            try:
                dom = self.conn.lookupByUUIDString(d.uuid)
                if now == "on" and not dom.isActive():
                    log.info("%s: powered on in the lab; starting its domain", d.node)
                    dom.create()
                    self.expected[(d.uuid, "on")] += 1  # events are handled on this thread
                elif now == "off" and dom.isActive():
                    log.info("%s: powered off in the lab; destroying its domain", d.node)
                    dom.destroy()
                    self.expected[(d.uuid, "off")] += 1
            except self.libvirt.libvirtError as exc:
                log.warning("%s: cannot follow the lab onto libvirt: %s", d.node, exc)

    def run(self) -> None:
        gone_since: float | None = None
        last_check = 0.0
        while True:
            try:
                item: tuple[Any, ...] | None = self.events.get(timeout=POLL)
            except queue.Empty:
                item = None
            if item is not None:
                self.handle(item)
            self.follow_log()
            if self.events.empty():
                self.reconcile()
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if self.lab_alive():
                    gone_since = None
                elif gone_since is None:
                    gone_since = last_check
                elif last_check - gone_since > 5.0:
                    raise SystemExit("the lab is gone")


def _stop_libvirtd(directory: Path) -> None:
    proc = recorded_processes(directory).get("libvirtd")
    if proc is not None:
        stop_process(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m faultline.lab.addon_libvirt")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    directory = args.state_dir / "addons" / NAME
    listener = Listener(args.state_dir)
    try:
        listener.setup()
    except Exception:
        log.exception("setup failed")
        raise
    (directory / READY).write_text("ready\n")
    try:
        listener.run()
    except SystemExit as exc:
        if exc.code not in (0, None):
            log.warning("stopping: %s", exc.code)
            if not listener.lab_alive():
                _stop_libvirtd(directory)  # nobody will call down() for this lab
        raise


if __name__ == "__main__":
    main()

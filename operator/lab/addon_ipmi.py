"""Lab add-on `ipmi`: one OpenIPMI `ipmi_sim` BMC per lab node, whose chassis really powers it.

`up` installs Debian's `openipmi` (ipmi_sim) and `ipmitool` when missing (and pyghmi, the
backend's library, into the running interpreter), writes a password of its own for this lab
(user `admin`, in a 0600 file) and starts, per node, an `ipmi_sim` listening for IPMI 1.5 /
2.0 (RMCP+) on 127.0.0.1 at a free UDP port: its own lan.conf (0600: it holds the password),
emulation file and persistence directory under `addons/ipmi/<node>/`, started detached, its
pid recorded.

The BMC's chassis control program is `assets/ipmi/chassis.py` (stdlib only, so each call
costs milliseconds): Get Chassis Status reports the node's power as the lab supervisor sees
it (booting counts as on); Chassis Control power down / up / hard reset / power cycle power
the lab node off, on or cycle it through the supervisor; soft-off (ACPI) runs `shutdown -h
now` inside the node, which stops its services cleanly and then powers the node off.

Clients: `ipmitool -I lanplus -C 3 -H 127.0.0.1 -p PORT -U admin -f PASSWORD_FILE chassis
power status` (ipmi_sim offers cipher suite 3, not ipmitool's default 17), or pyghmi.

`down` stops every recorded ipmi_sim (idempotent) and removes the directory. The add-on
returns `{"power": [{"driver": "ipmi"}], "nodes": {fqdn: {"bmc": {"address": "127.0.0.1",
"port": PORT, "username": "admin", "passwordFile": PATH}}}}`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultline.lab import packages
from faultline.lab.addons import addon_dir
from faultline.lab.system import NODE_ENV, LabError, ProcessId, run

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

NAME = "ipmi"
PACKAGES = ("openipmi", "ipmitool")
PYGHMI = "pyghmi==1.6.19"  # the `ipmi` extra's pin: Faultline's client for these BMCs
IPMI_SIM = "/usr/bin/ipmi_sim"
ADDRESS = "127.0.0.1"
USERNAME = "admin"
PASSWORD_FILE = "password"  # noqa: S105 - the name of the file
HOOK = "chassis.py"
PROCESSES = "processes.json"
LOG = "ipmi_sim.log"
START_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port may be taken before ipmi_sim binds it
POLL = 0.01

# The BMC is the management controller at IPMB address 0x20: a chassis device (device
# support 0x9f) with no sensors or SDRs. Manufacturer 0 keeps clients on generic IPMI.
EMULATION = """\
# Faultline lab: the BMC of one lab node; written by the ipmi add-on.
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x01 1 0 0x9f 0x000000 0x0001
mc_enable 0x20
"""


def ensure_installed() -> None:
    """ipmi_sim and ipmitool from Debian; pyghmi (the ipmi power backend's library) into
    the running interpreter, so a lab with BMCs can be driven right away."""
    packages.ensure(PACKAGES)
    if importlib.util.find_spec("pyghmi") is None:
        run([sys.executable, "-m", "pip", "install", "-q", PYGHMI], timeout=900)
        importlib.invalidate_caches()


def state_root(lab: Lab) -> Path:
    """The add-on's directory, without creating it (down must not)."""
    return lab.state_dir / "addons" / NAME


def lan_conf(node: str, port: int, password: str, hook: list[str]) -> str:
    command = shlex.join(hook)
    if '"' in command or "\\" in command:
        raise LabError(f"the ipmi add-on cannot quote {command!r} for lan.conf")
    return f"""\
# Faultline lab: the BMC of {node}; written by the ipmi add-on. Holds the password: mode 0600.
name "{node}"
set_working_mc 0x20
  startlan 1
    addr {ADDRESS} {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid {uuid.uuid4().hex}
  endlan
  chassis_control "{command}"
  user 2 true "{USERNAME}" "{password}" admin 10 md5
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ADDRESS, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    """Whether some socket is bound to 127.0.0.1:port (this network namespace)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/udp", encoding="ascii") as f:
            return any(line.split()[1] == wanted for line in list(f)[1:])
    except OSError:
        return False


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def install_hook(directory: Path) -> Path:
    """Copy the chassis control program in (the package may not keep exec bits)."""
    data = (importlib.resources.files("faultline.lab") / "assets" / "ipmi" / HOOK).read_bytes()
    target = directory / HOOK
    target.write_bytes(data)
    target.chmod(0o755)
    return target


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


# Our ipmi_sim children, so `down` in the process that started them reaps them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_bmc(lab: Lab, directory: Path, node: str, hook: Path, password: str) -> dict[str, Any]:
    """Start the node's ipmi_sim; returns what `processes.json` records for it."""
    home = directory / node
    (home / "state").mkdir(mode=0o700, parents=True, exist_ok=True)
    emu = home / "node.emu"
    emu.write_text(EMULATION)
    conf = home / "lan.conf"
    command = [sys.executable, "-I", str(hook), str(lab.state_dir), node]
    error = ""
    for _ in range(START_ATTEMPTS):
        port = free_udp_port()
        write_secret(conf, lan_conf(node, port, password, command))
        argv = [IPMI_SIM, "-n", "-c", str(conf), "-f", str(emu), "-s", str(home / "state")]
        with open(home / LOG, "ab") as log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=home,
                env=dict(NODE_ENV),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while child.poll() is None and not udp_bound(port) and time.monotonic() < deadline:
            time.sleep(POLL)
        proc = ProcessId.of(child.pid) if child.poll() is None else None
        if proc is not None and udp_bound(port):
            _CHILDREN[child.pid] = child
            return {"pid": proc.pid, "start": proc.start, "port": port}
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
        error = tail(home / LOG).strip() or f"it did not bind {ADDRESS}:{port}"
    raise LabError(f"ipmi_sim for {node} did not start: {error}")


def recorded(directory: Path) -> dict[str, dict[str, Any]]:
    try:
        data: dict[str, dict[str, Any]] = json.loads((directory / PROCESSES).read_text())
    except (OSError, ValueError):
        return {}
    return data


def record(directory: Path, node: str, entry: dict[str, Any]) -> None:
    data = recorded(directory)
    data[node] = entry
    (directory / PROCESSES).write_text(json.dumps(data, indent=2) + "\n")


def stop(entry: dict[str, Any], timeout: float = 5.0) -> None:
    proc = ProcessId(int(entry["pid"]), int(entry["start"]))
    if not (proc.kill(signal.SIGTERM) and proc.wait_gone(timeout)):
        proc.kill(signal.SIGKILL)
        proc.wait_gone(timeout)
    child = _CHILDREN.pop(proc.pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout)


class IpmiAddon:
    def up(self, lab: Lab) -> dict[str, Any]:
        ensure_installed()
        self.down(lab)  # leftovers of an earlier run (their users would be persisted)
        directory = addon_dir(lab, NAME)
        hook = install_hook(directory)
        password = secrets.token_urlsafe(12)  # 16 characters: fits IPMI 1.5 and 2.0
        password_file = directory / PASSWORD_FILE
        write_secret(password_file, password + "\n")
        nodes: dict[str, Any] = {}
        for node in lab.nodes:
            entry = start_bmc(lab, directory, node.name, hook, password)
            record(directory, node.name, entry)
            nodes[node.fqdn] = {
                "bmc": {
                    "address": ADDRESS,
                    "port": entry["port"],
                    "username": USERNAME,
                    "passwordFile": str(password_file),
                }
            }
        return {"power": [{"driver": "ipmi"}], "nodes": nodes}

    def down(self, lab: Lab) -> None:
        directory = state_root(lab)
        if not directory.is_dir():
            return
        for entry in recorded(directory).values():
            with contextlib.suppress(KeyError, ValueError, TypeError):
                stop(entry)
        shutil.rmtree(directory, ignore_errors=True)


ADDON = IpmiAddon()

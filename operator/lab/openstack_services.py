"""Processes of the `openstack` add-on: start detached, record by pid, wait, stop.

Every process the add-on starts is recorded in `processes.json` (pid + start time, so a
recycled pid is never mistaken for ours) together with how it was started (`commands.json`:
argv, environment, log), so one of them -- a nova-compute -- can be started again later.
Output of each goes to `logs/<name>.log` in the add-on directory; a failed start raises
LabError naming the service with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from faultline.lab.system import LabError, ProcessId

PROCESSES = "processes.json"
COMMANDS = "commands.json"
LOGS = "logs"
ADDRESS = "127.0.0.1"
POLL = 0.1

_LOCK = threading.Lock()  # processes.json / commands.json are written from several threads
# Our children, so the process that started them reaps them (no zombies in tests).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_SECRET = re.compile(r"(://[^:/@\s]+:)[^@\s]+@|((?:password|pass|secret)\s*[=:]\s*)\S+", re.I)


def redact(text: str) -> str:
    """Passwords out of log tails (URLs with credentials, `password = ...`)."""
    return _SECRET.sub(lambda m: f"{m.group(1)}***@" if m.group(1) else f"{m.group(2)}***", text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ADDRESS, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_path(directory: Path, name: str) -> Path:
    return directory / LOGS / f"{name}.log"


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return redact(path.read_text(errors="replace")[-chars:])
    except OSError:
        return ""


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _update(path: Path, name: str, entry: dict[str, Any] | None) -> None:
    with _LOCK:
        data = _read(path)
        if entry is None:
            data.pop(name, None)
        else:
            data[name] = entry
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.chmod(0o600)  # environments hold config paths only, but keep it private
        tmp.replace(path)


def recorded(directory: Path) -> dict[str, ProcessId]:
    return {
        name: ProcessId(int(v["pid"]), int(v["start"]))
        for name, v in _read(directory / PROCESSES).items()
    }


def process(directory: Path, name: str) -> ProcessId | None:
    return recorded(directory).get(name)


def start(
    directory: Path,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> ProcessId:
    """Start `argv` detached (own session), output to its log; record and return it."""
    _update(directory / COMMANDS, name, {"argv": list(argv), "env": dict(env)})
    return _spawn(directory, name, list(argv), dict(env), cwd)


def restart_recorded(directory: Path, name: str) -> ProcessId:
    """Start a recorded command again (after it was killed); refuses while it runs."""
    current = process(directory, name)
    if current is not None and current.alive():
        raise LabError(f"{name} is already running (pid {current.pid})")
    command = _read(directory / COMMANDS).get(name)
    if command is None:
        raise LabError(f"{name} was never started by this add-on")
    return _spawn(directory, name, command["argv"], command["env"], None)


def _spawn(
    directory: Path, name: str, argv: list[str], env: dict[str, str], cwd: Path | None
) -> ProcessId:
    log = log_path(directory, name)
    log.parent.mkdir(mode=0o755, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== faultline: starting {name} at {time.ctime()} ====\n".encode())
        out.flush()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd or directory,
                env=env,
            )
        except OSError as exc:
            raise LabError(f"{name}: cannot start {argv[0]}: {exc}") from exc
    proc = ProcessId.of(child.pid)
    if proc is None:
        child.wait()
        raise LabError(f"{name} exited at once (rc {child.returncode}):\n{tail(log)}")
    _CHILDREN[child.pid] = child
    _update(directory / PROCESSES, name, {"pid": proc.pid, "start": proc.start})
    return proc


def failed(directory: Path, name: str, why: str) -> LabError:
    return LabError(
        f"OpenStack lab: {name} {why}; tail of {log_path(directory, name)}:\n"
        f"{tail(log_path(directory, name))}"
    )


def wait_for(
    directory: Path,
    name: str,
    ready: Callable[[], bool],
    timeout: float,
    what: str = "to become ready",
) -> None:
    """Poll `ready` until true; fail early (with its log) when the process `name` died."""
    proc = process(directory, name)
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if proc is not None and not proc.alive():
            reap(proc.pid)
            raise failed(directory, name, f"exited while waiting for it {what}")
        if time.monotonic() > deadline:
            raise failed(directory, name, f"did not come up within {timeout:g} s ({what})")
        time.sleep(POLL)


def reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(1)


def _signal_group(proc: ProcessId, sig: signal.Signals) -> bool:
    """Signal the process group the recorded process leads (it was started in a session of
    its own, so its group id is its pid): gunicorn's workers, Erlang's helpers go too."""
    if not proc.alive():
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # pragma: no cover - not ours any more
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def stop(proc: ProcessId, timeout: float = 10.0) -> None:
    """SIGTERM to the process and its group, SIGKILL for what is left."""
    if _signal_group(proc, signal.SIGTERM):
        proc.wait_gone(timeout)
        reap(proc.pid)
        if not _group_gone(proc.pid, 2.0):  # workers still exiting: no more waiting
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    if proc.alive():
        proc.kill(signal.SIGKILL)
        proc.wait_gone(timeout)
    reap(proc.pid)


def kill(directory: Path, name: str, sig: signal.Signals = signal.SIGKILL) -> int | None:
    """Send `sig` to a recorded process and its group; its pid when sent."""
    proc = process(directory, name)
    if proc is None or not _signal_group(proc, sig):
        return None
    if sig == signal.SIGKILL:
        proc.wait_gone(10)
        reap(proc.pid)
        _group_gone(proc.pid, 10)
    return proc.pid


def stop_all(directory: Path, order: Sequence[str] = (), timeout: float = 10.0) -> None:
    """Stop every recorded process: SIGTERM to each (those named in `order` first, then the
    rest), then wait for all of them together and SIGKILL what is left."""
    procs = recorded(directory)
    names = [n for n in order if n in procs] + [n for n in procs if n not in order]
    for name in names:
        _signal_group(procs[name], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name in names:
        with contextlib.suppress(Exception):
            procs[name].wait_gone(max(0.0, deadline - time.monotonic()))
            stop(procs[name], timeout=5.0)  # SIGKILL for what is left, reap our children
        _update(directory / PROCESSES, name, None)

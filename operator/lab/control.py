"""Talking to a lab's supervisor over its Unix socket: one JSON request, one JSON answer."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faultline.lab.system import LabError

SOCKET_NAME = "supervisor.sock"
BOOT_TIMEOUT = 60.0  # from power on until SSH answers
OFF_TIMEOUT = 30.0  # from SIGKILL of a node's init until its processes are gone


@contextlib.contextmanager
def socket_path(state_dir: Path) -> Iterator[str]:
    """A path to the socket short enough for sockaddr_un (108 bytes) wherever the state
    dir lives: it goes through an open descriptor of the directory."""
    fd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def request(state_dir: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request; raise LabError when the supervisor is unreachable or says no."""
    try:
        with socket_path(state_dir) as path, socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            raw = b""
            while not raw.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
    except (OSError, TimeoutError) as exc:
        raise LabError(f"lab supervisor in {state_dir} is not answering: {exc}") from exc
    if not raw:
        raise LabError(f"lab supervisor in {state_dir} closed the connection")
    answer: dict[str, Any] = json.loads(raw)
    if not answer.get("ok"):
        raise LabError(str(answer.get("error", "lab supervisor refused the request")))
    return answer

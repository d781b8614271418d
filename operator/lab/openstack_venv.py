"""The venv of the lab's OpenStack services: pinned, installed once per machine, cached.

The pins live in `assets/openstack-requirements.txt` (the full transitive closure, so pip
installs with `--no-deps` and never resolves). The venv goes to
`~/.cache/faultline/openstack-<key>`, the key hashing the pin file and the Python version:
a second `lab up` on the same machine reuses it, a changed pin file gets a new one. A file
lock keeps two labs starting at once from installing twice; a marker written last tells a
complete venv from an interrupted install (which is removed and redone).

Faultline never imports anything from this venv: the services run as its own processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.resources
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from faultline.lab.system import LabError, run

PIN_FILE = "openstack-requirements.txt"
COMPLETE = ".faultline-complete"
INSTALL_TIMEOUT = 1800.0


def pins() -> bytes:
    return (importlib.resources.files("faultline.lab") / "assets" / PIN_FILE).read_bytes()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faultline"


def key() -> str:
    """Which venv (and which DB snapshot) belongs to these pins on this Python."""
    digest = hashlib.sha256(pins())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:16]


def venv_dir() -> Path:
    return cache_root() / f"openstack-{key()}"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def base_python() -> str:
    """The interpreter the venv is made from: this one (venv follows it to its base)."""
    return sys.executable


def ensure() -> tuple[Path, float]:
    """The ready venv, installing it when missing; returns (path, seconds spent installing)."""
    target = venv_dir()
    if (target / COMPLETE).is_file():
        return target, 0.0
    with locked(target.with_name(target.name + ".lock")):
        if (target / COMPLETE).is_file():  # another lab installed it meanwhile
            return target, 0.0
        started = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)
        requirements = target.with_name(target.name + ".requirements.txt")
        requirements.write_bytes(pins())
        run([base_python(), "-m", "venv", str(target)], timeout=300)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(Path.home()),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_FIND_LINKS"):
            if name in os.environ:
                env[name] = os.environ[name]
        result = run(
            [str(target / "bin" / "pip"), "install", "-q", "--no-deps", "-r", str(requirements)],
            timeout=INSTALL_TIMEOUT,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-3000:]
            raise LabError(f"installing the OpenStack venv in {target} failed: {detail}")
        (target / COMPLETE).write_text(f"{time.time()}\n")
        return target, time.monotonic() - started

"""The lab's SSH keys: one client key pair, one host key per node, and known_hosts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from faultline.lab.system import LabError


def ensure_keys(paths: Iterable[tuple[Path, str]]) -> None:
    """Generate every missing ed25519 key pair (path, comment), concurrently."""
    jobs: list[tuple[Path, subprocess.Popen[bytes]]] = []
    for path, comment in paths:
        if path.exists() and path.with_suffix(".pub").exists():
            continue
        path.unlink(missing_ok=True)
        path.with_suffix(".pub").unlink(missing_ok=True)
        argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
        jobs.append(
            (path, subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE))
        )
    for path, proc in jobs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise LabError(f"ssh-keygen for {path} failed: {err.decode(errors='replace')}")
        path.chmod(0o600)


def public_key(private_path: Path) -> str:
    """'ssh-ed25519 AAAA...' without the comment."""
    fields = private_path.with_suffix(".pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def known_hosts(entries: Iterable[tuple[Sequence[str], str]]) -> str:
    """known_hosts lines, one per host: every name it answers to, then its host key."""
    return "".join(f"{','.join(names)} {key}\n" for names, key in entries)

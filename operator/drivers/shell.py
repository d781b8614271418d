"""Building blocks for commands sent to nodes. Every value is validated or quoted."""

from __future__ import annotations

import base64
import shlex


def q(value: str | int) -> str:
    return shlex.quote(str(value))


def pattern_var(pattern: str, var: str = "pat") -> str:
    """Assign a process pattern to a shell variable without it appearing in our command line.

    `pgrep -f PATTERN` would otherwise match the very shell that runs it (its command line
    contains the pattern). The pattern travels base64-encoded and is decoded on the node.
    """
    encoded = base64.b64encode(pattern.encode()).decode()
    return f"{var}=$(printf %s {q(encoded)} | base64 -d)"


def find_pids(pattern: str) -> str:
    """A script printing the pids whose command line matches `pattern`, one per line."""
    return f'{pattern_var(pattern)}; pgrep -f -- "$pat" || true'


def detached(script: str, marker: str) -> str:
    """Start `script` in its own session, detached from the SSH channel; print its pid.

    `marker` becomes the process's $0 so it can be found and verified later.
    """
    return f"setsid sh -c {q(script)} {q(marker)} </dev/null >/dev/null 2>&1 & echo $!"


def kill_by_marker(marker: str, signal: str = "TERM") -> str:
    """Kill the process groups we started and marked (found by marker, not by a stored pid)."""
    return (
        f"for p in $({find_pids(marker)}); do "
        f"kill -{signal} -- -$p 2>/dev/null || kill -{signal} $p 2>/dev/null; done; true"
    )

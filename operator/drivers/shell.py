"""Building blocks for commands sent to nodes. Every value is validated or quoted."""

from __future__ import annotations

import base64
import re
import shlex


def q(value: str | int) -> str:
    return shlex.quote(str(value))


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:@ -]*$")


def pattern_var(pattern: str, var: str = "pat") -> str:
    """Assign a process pattern to a shell variable without it appearing in our command line.

    `pgrep -f PATTERN` would otherwise match the very shell that runs it (its command line
    contains the pattern). A plain pattern gets its first character bracketed (`[m]emcached`
    matches memcached, but not itself); any other travels base64-encoded, decoded on the node.
    """
    if _PLAIN.match(pattern):
        return f"{var}={q(f'[{pattern[0]}]{pattern[1:]}')}"
    encoded = base64.b64encode(pattern.encode()).decode()
    return f"{var}=$(printf %s {q(encoded)} | base64 -d)"


def find_pids(pattern: str) -> str:
    """A script printing the pids whose command line matches `pattern`, one per line."""
    return f'{pattern_var(pattern)}; pgrep -f -- "$pat" || true'


SIGNALS = frozenset({"KILL", "TERM", "STOP", "CONT"})


def signal_pids(signal: str, pids: str) -> str:
    """Send `signal` to each pid that `pids` (a shell word list) expands to.

    A process that exits between being observed and being signalled is not a failure (a
    service's start script is often gone a moment later); any other refusal is: the
    script prints which pid and fails.
    """
    if signal not in SIGNALS:
        raise ValueError(f"signal {signal!r} is not one of {sorted(SIGNALS)}")
    return (
        f'r=0; for p in {pids}; do e=$(kill -{signal} "$p" 2>&1) || [ ! -e "/proc/$p" ] || '
        f'{{ echo "cannot send SIG{signal} to pid $p: ${{e##*: }}" >&2; r=1; }}; '
        'done; [ "$r" -eq 0 ]'
    )


#: Environment variable that tags every process a fault starts, children included.
MARK_VAR = "FAULTLINE_MARK"


def marked(marker: str) -> str:
    """Prefix for a command whose whole process tree carries `marker`."""
    return f"{MARK_VAR}={q(marker)}"


def detached(script: str, marker: str) -> str:
    """Start `script` in its own session, detached from the SSH channel; print its pid.

    Every process it starts inherits the marker in its environment, so recovery finds them
    all even when they move to another process group (stress-ng does).
    """
    return (
        f"{marked(marker)} setsid sh -c {q(script)} {q(marker)} "
        "</dev/null >/dev/null 2>&1 & echo $!"
    )


def marked_pids(marker: str) -> str:
    """A script printing the pids of every process carrying `marker` in its environment."""
    entry = f"{MARK_VAR}={marker}"
    return (
        f"for f in $(grep -lsxzF -- {q(entry)} /proc/[0-9]*/environ); do "
        'p=${f#/proc/}; echo "${p%/environ}"; done'
    )


def kill_by_marker(marker: str, signal: str = "TERM") -> str:
    """Kill every process a fault started (found by its environment marker)."""
    return f"for p in $({marked_pids(marker)}); do kill -{signal} $p 2>/dev/null; done; true"

"""Bringing nodes back to boot-time health between tests."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

from faultline.lab.system import all_pids, pid_namespace, process_state


def continue_stopped(init_pids: Iterable[int]) -> list[int]:
    """SIGCONT every stopped (SIGSTOP) process in the PID namespaces of these node inits.

    Done from the host: a node's `service X status` would call a frozen daemon running.
    """
    namespaces = {ns for ns in (pid_namespace(pid) for pid in init_pids) if ns is not None}
    resumed = []
    for pid in all_pids():
        if process_state(pid) == "T" and pid_namespace(pid) in namespaces:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                resumed.append(pid)
    return resumed

"""Commands sent to nodes: quoting, and the pattern never matching our own shell.

These run the generated shell locally (real /bin/sh, real pgrep) rather than inspecting strings.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from faultline.drivers.network import drop_rules
from faultline.drivers.services import SystemService, SysvService
from faultline.drivers.shell import find_pids, signal_pids


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)


def test_find_pids_does_not_match_the_shell_running_it() -> None:
    marker = "faultline-unit-no-such-process-4711"
    assert sh(find_pids(marker)).stdout.strip() == ""


def test_find_pids_finds_a_real_process() -> None:
    marker = "faultline-unit-sleeper-4712"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        assert sh(find_pids(marker)).stdout.split() == [str(proc.pid)]
    finally:
        proc.kill()
        proc.wait()


def test_signal_pids_ignores_a_process_that_already_exited() -> None:
    """A start script seen by pgrep may be gone before the kill: that is not a failure."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        result = sh(signal_pids("KILL", f"{gone.pid} {alive.pid}"))
        assert result.returncode == 0, result.stderr
        assert alive.wait(5) == -9
    finally:
        alive.kill()
        alive.wait()


def test_signal_pids_fails_when_a_live_process_refuses() -> None:
    """An unprivileged user may not kill root's process (EPERM): the script says which pid.

    The victim runs in its own session: SIGCONT (unlike SIGKILL) is allowed within a
    session whatever the uid, so the refusal must not depend on where the tests run.
    """
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                signal_pids("KILL", str(victim.pid)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0
        assert f"cannot send SIGKILL to pid {victim.pid}: Operation not permitted" in result.stderr
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_signal_pids_accepts_only_known_signals() -> None:
    with pytest.raises(ValueError, match="signal"):
        signal_pids("HUP; reboot", "1")


def test_service_names_are_quoted() -> None:
    assert SysvService("memcached", "memcached").start() == "service memcached start"
    assert "systemctl restart nova-api" in SystemService("nova-api", "nova-api").restart()


def test_drop_rules_carry_the_injection_tag() -> None:
    (rule,) = drop_rules("tcp", 11211, "ingress", "faultline:fl-abc")
    assert rule.spec() == (
        "INPUT -p tcp --dport 11211 -m comment --comment faultline:fl-abc -j DROP"
    )
    both = drop_rules("udp", 53, "both", "faultline:x")
    assert [r.chain for r in both] == ["INPUT", "OUTPUT"]


def test_marker_finds_and_kills_children_that_left_the_process_group() -> None:
    """stress-ng moves its workers to their own group; the environment marker follows them."""
    import time
    import uuid

    from faultline.drivers.shell import detached, kill_by_marker, marked_pids

    mark = f"faultline-unit-{uuid.uuid4().hex[:8]}"
    leader = sh(detached("setsid sleep 60 & sleep 60", mark)).stdout.strip()
    try:
        deadline = time.monotonic() + 5
        while len(found := sh(marked_pids(mark)).stdout.split()) < 3:
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        assert leader in found
        groups = {sh(f"ps -o pgid= -p {p}").stdout.strip() for p in found}
        assert len(groups) == 2  # really split across process groups
        sh(kill_by_marker(mark, "KILL"))
        deadline = time.monotonic() + 5
        while sh(marked_pids(mark)).stdout.split():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        sh(kill_by_marker(mark, "KILL"))

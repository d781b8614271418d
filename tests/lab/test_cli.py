"""The `faultline` command on the lab: inject with hold and rollback, Ctrl-C, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab_observe import eventually, pids

pytestmark = pytest.mark.lab

FAULTLINE = str(Path(sys.executable).with_name("faultline"))


def run(*args: str, journal: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--journal", str(journal)] if journal else []
    cmd = [FAULTLINE, *args[:1], *extra, *args[1:]] if journal else [FAULTLINE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_verify(lab: Any) -> None:
    done = run("verify", "-c", str(lab.config_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok") == 3


def test_inject_for_seconds_prints_and_rolls_back(lab: Any, tmp_path: Path) -> None:
    done = run(
        "inject",
        "-c",
        str(lab.config_path),
        "kill memcached service on node1 node for 1 second",
        journal=tmp_path / "j",
    )
    assert done.returncode == 0, done.stderr
    assert "killed pids" in done.stdout
    assert "rolled back" in done.stdout and "Recovered" in done.stdout
    assert pids(lab, "node1", "memcached")


def test_inject_json_output(lab: Any, tmp_path: Path) -> None:
    done = run(
        "inject",
        "-c",
        str(lab.config_path),
        "-o",
        "json",
        "restart redis service on one node",
        journal=tmp_path / "j",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["action"] == "restart" and len(data["nodes"]) == 1 and data["nodes"][0]["ok"]


def _start_hold(lab: Any, journal: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            FAULTLINE,
            "inject",
            "--journal",
            str(journal),
            "-c",
            str(lab.config_path),
            "kill memcached service on node2 node for 60 seconds",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_rolls_back(lab: Any, tmp_path: Path) -> None:
    proc = _start_hold(lab, tmp_path / "j")
    try:
        eventually(lambda: pids(lab, "node2", "memcached") == [], 20, "memcached killed")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "rolled back" in err
    assert pids(lab, "node2", "memcached")


def test_recover_after_the_process_was_killed(lab: Any, tmp_path: Path) -> None:
    journal = tmp_path / "j"
    proc = _start_hold(lab, journal)
    try:
        eventually(lambda: pids(lab, "node2", "memcached") == [], 20, "memcached killed")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert pids(lab, "node2", "memcached") == []  # nobody rolled it back
    done = run("recover", "-c", str(lab.config_path), journal=journal)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Recovered" in done.stdout
    assert pids(lab, "node2", "memcached")
    again = run("recover", "-c", str(lab.config_path), journal=journal)
    assert "nothing to recover" in again.stdout


def test_bad_config_field_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "cloud.yaml"
    bad.write_text("ssh:\n  port: seventy\n")
    done = run("verify", "-c", str(bad))
    assert done.returncode == 2
    assert "ssh.port" in done.stderr


def test_bad_sentence_points_at_word(lab: Any, tmp_path: Path) -> None:
    done = run(
        "inject", "-c", str(lab.config_path), "kill memcached servce", journal=tmp_path / "j"
    )
    assert done.returncode == 2
    assert "servce" in done.stderr and "^" in done.stderr


def test_discover_writes_a_static_config(lab: Any, tmp_path: Path) -> None:
    import yaml

    out = tmp_path / "static.yaml"
    lab.exec("node3", "service redis-server stop")
    done = run("discover", "-c", str(lab.config_path), "--write", str(out))
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(out.read_text())
    assert data["services"]["memcached"]["nodes"] == ["node1", "node2", "node3"]
    assert data["services"]["redis"]["nodes"] == ["node1", "node2"]

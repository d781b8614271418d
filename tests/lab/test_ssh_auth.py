"""SSH as the unprivileged lab user `faultline`: password and key logins, and `become`
(sudo, with the user's password) for actions that need root.

Every node has the user (its own /etc/passwd, shadow and sudoers.d); its password lives in
the lab's state dir. The secret must never show in results, records, the journal or errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import faultline
from faultline.api import VerifyError
from faultline.drivers.ssh import SshPool, SshTarget
from faultline.lab import Lab
from faultline.lab.config import LAB_USER
from faultline.lab.node import user_password_path
from faultline.models.config import parse_config
from lab_observe import NODES, eventually, pids

pytestmark = pytest.mark.lab


def user_config(lab: Lab, *, key: bool = True, **ssh: Any) -> dict[str, Any]:
    """The lab's target config, logging in as the lab user (camelCase `ssh` keys)."""
    data: dict[str, Any] = yaml.safe_load(lab.config_path.read_text())
    data["ssh"]["user"] = LAB_USER
    if not key:
        del data["ssh"]["privateKeyFile"]
    data["ssh"].update(ssh)
    return data


@pytest.fixture
def password(healthy_lab: Lab) -> str:
    path = user_password_path(healthy_lab.state_dir)
    assert path.stat().st_mode & 0o777 == 0o600
    secret = path.read_text().strip()
    assert len(secret) >= 16
    return secret


def shown(cloud: Any, journal: Path, *results: Any) -> str:
    """Everything the engine reports: results, records in memory and on disk."""
    parts = [r.model_dump_json() for r in results]
    parts += [r.model_dump_json() for r in cloud.records()]
    parts.append(journal.read_text() if journal.exists() else "")
    return "\n".join(parts)


def test_the_user_exists_only_inside_nodes(healthy_lab: Lab) -> None:
    for node in NODES:
        done = healthy_lab.exec(node, f"id -u {LAB_USER} && ls -ld ~{LAB_USER}", check=True)
        assert f"/home/{LAB_USER}" in done.stdout
    host_accounts = Path("/etc/passwd").read_text() + Path("/etc/shadow").read_text()
    assert not any(line.startswith(f"{LAB_USER}:") for line in host_accounts.splitlines())
    assert not Path(f"/etc/sudoers.d/{LAB_USER}").exists()


def test_reset_state_mounts_the_accounts_again(healthy_lab: Lab) -> None:
    """The host replacing its own /etc/passwd (useradd renames a new one into place) detaches
    the node's mount over it; unmounting inside the node has the same effect."""
    healthy_lab.exec("node1", "umount /etc/passwd /etc/shadow", check=True)
    assert healthy_lab.exec("node1", f"id -u {LAB_USER}").returncode != 0
    fixes = healthy_lab.reset_state()
    assert fixes["node1"] == [
        "fixed: /etc/passwd mounted again",
        "fixed: /etc/shadow mounted again",
    ]
    assert fixes["node2"] == fixes["node3"] == []
    healthy_lab.exec("node1", f"id -u {LAB_USER}", check=True)


def test_password_login(healthy_lab: Lab, password: str) -> None:
    data = user_config(
        healthy_lab, key=False, passwordFile=str(user_password_path(healthy_lab.state_dir))
    )
    with faultline.connect(data) as cloud:
        checks = cloud.verify()
    assert [c.fqdn for c in checks] == list(NODES)
    assert all(c.reachable for c in checks)


def test_wrong_password_is_refused_without_showing_it(
    healthy_lab: Lab, password: str, tmp_path: Path
) -> None:
    wrong_secret = "not-" + password[::-1]
    wrong = tmp_path / "wrong.password"
    wrong.write_text(wrong_secret + "\n")
    wrong.chmod(0o600)
    data = user_config(healthy_lab, key=False, passwordFile=str(wrong))
    before = pids(healthy_lab, "node1", "memcached")
    journal = tmp_path / "journal.jsonl"
    with faultline.connect(data, journal=journal) as cloud:
        with pytest.raises(VerifyError) as err:
            cloud.verify()
        assert len(err.value.checks) == len(NODES)
        for check in err.value.checks:
            assert not check.reachable
            assert f"authentication as {LAB_USER!r} refused" in (check.error or "")
        with pytest.raises(faultline.ActionError) as act:
            cloud.get_service("memcached").kill(nodes=cloud.get_nodes(["node1"]))
        assert "refused" in str(act.value)
        text = f"{err.value}\n{act.value}\n{shown(cloud, journal, act.value.result)}"
    assert wrong_secret not in text and password not in text
    assert pids(healthy_lab, "node1", "memcached") == before


def test_become_with_password_kills_and_recovers(
    healthy_lab: Lab, password: str, tmp_path: Path
) -> None:
    lab = healthy_lab
    data = user_config(lab, become=True, becomePasswordFile=str(user_password_path(lab.state_dir)))
    before = {n: pids(lab, n, "memcached") for n in NODES}
    assert all(before.values())
    journal = tmp_path / "journal.jsonl"
    with faultline.connect(data, journal=journal) as cloud:
        result = cloud.get_service("memcached").kill(nodes=cloud.get_nodes(["node1"]))
        assert result.ok, result
        assert result.nodes[0].output == f"killed pids {' '.join(before['node1'])}"
        assert pids(lab, "node1", "memcached") == []
        assert pids(lab, "node2", "memcached") == before["node2"]
        assert pids(lab, "node3", "memcached") == before["node3"]

        recovered = cloud.recover(result)
        assert recovered.ok, recovered
        eventually(lambda: bool(pids(lab, "node1", "memcached")), what="memcached on node1")
        assert set(pids(lab, "node1", "memcached")).isdisjoint(before["node1"])
        text = shown(cloud, journal, result, recovered)
    assert password not in text


def test_become_with_a_wrong_password_fails_clearly(
    healthy_lab: Lab, password: str, tmp_path: Path
) -> None:
    wrong_secret = "not-" + password[::-1]
    wrong = tmp_path / "wrong.password"
    wrong.write_text(wrong_secret + "\n")
    data = user_config(healthy_lab, become=True, becomePasswordFile=str(wrong))
    before = pids(healthy_lab, "node1", "memcached")
    journal = tmp_path / "journal.jsonl"
    with faultline.connect(data, journal=journal) as cloud:
        with pytest.raises(VerifyError) as checks:  # verify runs its probe with become too
            cloud.verify()
        with pytest.raises(faultline.ActionError) as err:
            cloud.get_service("memcached").kill(nodes=cloud.get_nodes(["node1"]))
        text = f"{checks.value}\n{err.value}\n{shown(cloud, journal, err.value.result)}"
    assert "node1: `true` failed" in str(checks.value)
    assert "incorrect password" in str(checks.value)
    assert "node1: kill memcached" in str(err.value)
    assert "incorrect password" in str(err.value)
    assert wrong_secret not in text and password not in text
    assert pids(healthy_lab, "node1", "memcached") == before


def test_without_become_the_kill_is_denied(healthy_lab: Lab) -> None:
    lab = healthy_lab
    before = pids(lab, "node1", "memcached")
    assert before
    with (
        faultline.connect(user_config(lab)) as cloud,
        pytest.raises(faultline.ActionError) as err,
    ):
        cloud.get_service("memcached").kill(nodes=cloud.get_nodes(["node1"]))
    [node] = err.value.result.nodes
    assert node.fqdn == "node1" and not node.ok
    assert "Operation not permitted" in (node.error or "")
    assert "node1: kill memcached" in str(err.value)
    assert pids(lab, "node1", "memcached") == before


def test_become_without_a_password_fails_at_once(healthy_lab: Lab) -> None:
    """sudo must not read the command's script as password attempts, nor wait for input."""
    lab = healthy_lab
    before = pids(lab, "node1", "memcached")
    with faultline.connect(user_config(lab, become=True)) as cloud:
        started = time.monotonic()
        with pytest.raises(faultline.ActionError) as err:
            cloud.get_service("memcached").kill(nodes=cloud.get_nodes(["node1"]))
        assert time.monotonic() - started < 5
    assert "a password is required" in str(err.value)
    assert pids(lab, "node1", "memcached") == before


@pytest.fixture(params=["asks", "nopasswd", "cached"])
def sudo_rule(request: pytest.FixtureRequest, healthy_lab: Lab) -> Iterator[str]:
    """node1's sudo asks for the password every time, never, or once (global timestamp).

    The extra rule goes into node1's own sudoers.d, in its node dir (never the host's).
    """
    rules = {
        "asks": "",
        "nopasswd": f"{LAB_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n",
        "cached": f"Defaults:{LAB_USER} timestamp_type=global\n",
    }
    extra = Path(healthy_lab.node("node1").node_dir) / "etc" / "sudoers.d" / "zz-test"
    extra.write_text(rules[request.param])
    extra.chmod(0o440)
    try:
        yield str(request.param)
    finally:
        extra.unlink()
        healthy_lab.exec("node1", "rm -rf /run/sudo/ts")  # forget cached credentials


def test_become_password_never_reaches_the_command(
    healthy_lab: Lab, password: str, sudo_rule: str
) -> None:
    """sudo reads the password only when it asks for it; what it leaves must not become the
    command's input (a script would run the password as a command and echo it back)."""
    data = user_config(
        healthy_lab, become=True, becomePasswordFile=str(user_password_path(healthy_lab.state_dir))
    )
    config = parse_config(data)
    node1 = healthy_lab.node("node1")

    async def run() -> list[tuple[int | None, str, str]]:
        pool = SshPool(config.ssh)
        target = SshTarget("node1", node1.ip, 22, LAB_USER)
        try:
            done = []
            for command, stdin in [
                ("sh -s", "id -u\n"),
                ("sh -s", "id -un\n"),  # cached credentials now, with "cached"
                ("cat", "the command's own input\n"),
                ("cat", None),
            ]:
                result = await pool.run(target, command, stdin=stdin, timeout=20)
                done.append((result.exit_status, result.stdout, result.stderr))
            return done
        finally:
            await pool.close()

    results = asyncio.run(run())
    assert results == [
        (0, "0\n", ""),
        (0, "root\n", ""),
        (0, "the command's own input\n", ""),
        (0, "", ""),
    ]

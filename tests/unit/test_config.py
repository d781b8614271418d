"""Config loading: native and os-faults formats, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

import faultline
from faultline.api import find_config_file, load_config_file
from faultline.models.config import parse_config
from faultline.models.errors import ConfigError, UnsafeNameError

NATIVE = {
    "discovery": {
        "static": {
            "nodes": [
                {"fqdn": "node1", "ip": "10.0.0.11", "labels": {"role": "controller"}},
                {"fqdn": "node2.example.org", "ip": "10.0.0.12"},
            ]
        }
    },
    "ssh": {"user": "root", "privateKeyFile": "/k", "knownHostsFile": "/kh"},
    "services": {"memcached": {"driver": "sysv", "grep": "memcached", "port": {"number": 11211}}},
    "networks": {"management": "eth1"},
}


def test_native_config_camel_case() -> None:
    config = parse_config(NATIVE)
    assert [n.fqdn for n in config.nodes] == ["node1", "node2.example.org"]
    assert config.ssh.private_key_file == "/k"
    assert config.services["memcached"].port is not None
    assert config.services["memcached"].port.number == 11211
    assert config.networks == {"management": "eth1"}
    assert config.ssh.insecure_skip_host_key_check is False


def test_unknown_field_is_named() -> None:
    bad = {**NATIVE, "ssh": {"usr": "root"}}
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    assert err.value.field == "ssh.usr"


def test_bad_ip_is_named() -> None:
    bad = {"discovery": {"static": {"nodes": [{"fqdn": "n1", "ip": "10.0.0"}]}}}
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    assert err.value.field == "discovery.static.nodes[0].ip"
    assert "not an IP address" in str(err.value)


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ("services", {"memcached": {"unit": "x; rm -rf /"}}, "services.memcached.unit"),
        ("networks", {"management": "eth1 down"}, "networks"),
        ("containers", {"web": {"name": "$(reboot)"}}, "containers.web.name"),
    ],
)
def test_unsafe_names_are_refused(section: str, value: object, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**NATIVE, section: value})
    assert err.value.field == field
    assert "is not a valid name" in str(err.value)


def test_names_module_refuses_shell_metacharacters() -> None:
    from faultline.models import names

    with pytest.raises(UnsafeNameError):
        names.unit_name("x; rm -rf /")
    assert names.unit_name("nova-api@1.service") == "nova-api@1.service"


def test_process_driver_needs_commands() -> None:
    bad = {**NATIVE, "services": {"agent": {"driver": "process", "grep": "agent"}}}
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    assert err.value.field == "services.agent"
    assert "startCommand" in str(err.value)


def test_service_pinned_to_unknown_node() -> None:
    bad = {**NATIVE, "services": {"memcached": {"nodes": ["node9"]}}}
    with pytest.raises(ConfigError, match="node9"):
        parse_config(bad)


OSFAULTS = {
    "cloud_management": {"driver": "universal"},
    "node_discover": {
        "driver": "node_list",
        "args": [
            {
                "fqdn": "node1.local",
                "ip": "192.168.5.127",
                "auth": {"username": "root", "private_key_file": "cloud_key"},
            },
            {"fqdn": "node2.local", "ip": "192.168.5.128"},
        ],
    },
    "services": {
        "memcached": {
            "driver": "system_service",
            "args": {"service_name": "memcached", "grep": "memcached", "port": ["tcp", 11211]},
        },
        "nova-api": {
            "driver": "process",
            "args": {"grep": "nova-api", "start_cmd": "nova-api &", "port": ["tcp", 8774]},
        },
    },
    "containers": {
        "neutron_api": {"driver": "docker_container", "args": {"container_name": "neutron_api"}}
    },
}


def test_osfaults_format_converts() -> None:
    config = parse_config(OSFAULTS)
    assert [n.ip for n in config.nodes] == ["192.168.5.127", "192.168.5.128"]
    assert config.ssh.private_key_file == "cloud_key"
    assert config.services["memcached"].driver == "system"
    assert config.services["memcached"].unit == "memcached"
    assert config.services["nova-api"].start_command == "nova-api &"
    assert config.containers["neutron_api"].driver == "docker"


def test_osfaults_inline_password_refused_with_fix() -> None:
    data = {
        "cloud_management": {"driver": "universal", "args": {"auth": {"password": "hunter2"}}},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "passwordFile" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_osfaults_unknown_driver_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"cloud_management": {"driver": "fuel"}})
    assert err.value.field == "cloud_management.driver"


def test_config_file_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.delenv("FAULTLINE_CONFIG", raising=False)
    monkeypatch.delenv("OS_FAULTS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "os-faults.yaml").write_text(yaml.safe_dump(OSFAULTS))
    found = find_config_file()
    assert found is not None and found.name == "os-faults.yaml"
    other = tmp_path / "elsewhere.json"
    other.write_text('{"cloud_management": {"driver": "universal"}}')
    monkeypatch.setenv("OS_FAULTS_CONFIG", str(other))
    assert find_config_file() == other
    assert load_config_file(other).nodes == []


def test_connect_without_config_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAULTLINE_CONFIG", raising=False)
    monkeypatch.delenv("OS_FAULTS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    if find_config_file() is not None:
        pytest.fail("a config in /etc would make this test meaningless")
    with pytest.raises(ConfigError, match="OS_FAULTS_CONFIG"):
        faultline.connect()


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text("services: [unclosed")
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert err.value.field == str(path)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"ssh": {"passwordFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}},
            "ssh.passwordFile",
        ),
        ({"ssh": {"privateKeyFile": "/etc/shadow"}}, "ssh.privateKeyFile"),
        (
            {"ssh": {"jumpHost": {"host": "evil", "privateKeyFile": "/x"}}},
            "ssh.jumpHost.privateKeyFile",
        ),
        (
            {"power": [{"driver": "libvirt", "args": {"passwordFile": "/x"}}]},
            "power[0].args.passwordFile",
        ),
    ],
)
def test_fault_target_cannot_read_operator_files(spec: dict[str, object], field: str) -> None:
    """Else a FaultTarget author could exfiltrate the operator's service-account token."""
    from faultline.reconcile.targets import parse_target_spec

    with pytest.raises(ConfigError) as err:
        parse_target_spec(spec)
    assert field in str(err.value) and "Secret" in str(err.value)
    parse_target_spec({"ssh": {"privateKeySecret": {"name": "s", "key": "k"}}})

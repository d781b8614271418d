"""Read os-faults configuration files (driver + args) into Faultline's native format."""

from __future__ import annotations

from typing import Any

from faultline.models.errors import ConfigError

_OSFAULTS_KEYS = {"cloud_management", "node_discover", "power_managements", "power_management"}

_SERVICE_DRIVERS = {
    "system_service": "system",
    "systemd_service": "systemd",
    "sysv_service": "sysv",
    "process": "process",
}
_CONTAINER_DRIVERS = {"docker_container": "docker", "podman_container": "podman"}


def is_osfaults_format(data: dict[str, Any]) -> bool:
    return bool(_OSFAULTS_KEYS & set(data))


def _auth_to_ssh(auth: dict[str, Any], field: str) -> dict[str, Any]:
    ssh: dict[str, Any] = {}
    for key, value in auth.items():
        if key == "username":
            ssh["user"] = value
        elif key == "private_key_file":
            ssh["privateKeyFile"] = value
        elif key == "become":
            ssh["become"] = bool(value)
        elif key == "become_username":
            ssh["become"] = True
        elif key in ("password", "become_password"):
            raise ConfigError(
                f"{field}.{key}",
                "inline passwords are not read",
                "put the password in a file and use ssh.passwordFile / ssh.becomePasswordFile",
            )
        elif key == "jump":
            ssh["jumpHost"] = {
                "host": value.get("host"),
                "user": value.get("username"),
                "privateKeyFile": value.get("private_key_file"),
            }
        else:
            raise ConfigError(f"{field}.{key}", "unknown os-faults auth option")
    return ssh


def _node(item: dict[str, Any], i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    field = f"node_discover.args[{i}]"
    if "ip" not in item:
        raise ConfigError(f"{field}.ip", "missing", "each node_list entry needs an ip")
    node: dict[str, Any] = {"fqdn": item.get("fqdn") or item["ip"], "ip": item["ip"]}
    if item.get("mac"):
        node["mac"] = item["mac"]
    ssh = _auth_to_ssh(item.get("auth") or {}, f"{field}.auth")
    if "user" in ssh:
        node["sshUser"] = ssh.pop("user")
    return node, ssh


def _service(name: str, item: dict[str, Any]) -> dict[str, Any]:
    field = f"services.{name}"
    driver = item.get("driver", "system_service")
    if driver not in _SERVICE_DRIVERS:
        raise ConfigError(
            f"{field}.driver",
            f"os-faults driver {driver!r} is not supported",
            f"use one of {', '.join(sorted(_SERVICE_DRIVERS))}",
        )
    args = dict(item.get("args") or {})
    out: dict[str, Any] = {"driver": _SERVICE_DRIVERS[driver]}
    if "service_name" in args:
        out["unit"] = args.pop("service_name")
    if "grep" in args:
        out["grep"] = args.pop("grep")
    if "port" in args:
        port = args.pop("port")
        if not (isinstance(port, list | tuple) and len(port) == 2):
            raise ConfigError(
                f"{field}.args.port", "expected [protocol, number]", "e.g. ['tcp', 11211]"
            )
        out["port"] = {"protocol": port[0], "number": port[1]}
    for src, dst in (
        ("start_cmd", "startCommand"),
        ("terminate_cmd", "terminateCommand"),
        ("restart_cmd", "restartCommand"),
    ):
        if src in args:
            out[dst] = args.pop(src)
    if args:
        raise ConfigError(f"{field}.args.{sorted(args)[0]}", "unknown os-faults service option")
    if item.get("hosts"):
        out["nodes"] = list(item["hosts"])
    return out


def _container(name: str, item: dict[str, Any]) -> dict[str, Any]:
    field = f"containers.{name}"
    driver = item.get("driver", "docker_container")
    if driver not in _CONTAINER_DRIVERS:
        raise ConfigError(f"{field}.driver", f"os-faults driver {driver!r} is not supported")
    args = item.get("args") or {}
    out: dict[str, Any] = {
        "driver": _CONTAINER_DRIVERS[driver],
        "name": args.get("container_name", name),
    }
    if item.get("hosts"):
        out["nodes"] = list(item["hosts"])
    return out


def to_native(data: dict[str, Any]) -> dict[str, Any]:
    """Convert an os-faults config mapping; unknown os-faults drivers are named in the error."""
    cloud = data.get("cloud_management") or {}
    driver = cloud.get("driver", "universal")
    if driver not in ("universal", "devstack"):
        raise ConfigError(
            "cloud_management.driver",
            f"{driver!r} is not supported",
            "use 'universal' with node_discover: node_list",
        )
    args = dict(cloud.get("args") or {})
    ssh: dict[str, Any] = {}
    auth = dict(args.pop("auth", {}) or {})
    if "username" in args:
        auth["username"] = args.pop("username")
    if "private_key_file" in args:
        auth["private_key_file"] = args.pop("private_key_file")
    ssh.update(_auth_to_ssh(auth, "cloud_management.args.auth"))
    nodes: list[dict[str, Any]] = []
    if driver == "devstack" and "address" in args:
        nodes.append({"fqdn": args.get("address"), "ip": args.pop("address")})
    discover = data.get("node_discover") or {}
    if discover:
        if discover.get("driver", "node_list") != "node_list":
            raise ConfigError(
                "node_discover.driver",
                f"{discover.get('driver')!r} is not supported",
                "use node_list",
            )
        for i, item in enumerate(discover.get("args") or []):
            node, node_ssh = _node(item, i)
            for key, value in node_ssh.items():
                ssh.setdefault(key, value)
            nodes.append(node)
    native: dict[str, Any] = {
        "discovery": {"static": {"nodes": nodes}},
        "ssh": ssh,
        "services": {k: _service(k, v or {}) for k, v in (data.get("services") or {}).items()},
        "containers": {
            k: _container(k, v or {}) for k, v in (data.get("containers") or {}).items()
        },
    }
    if "networks" in data:
        native["networks"] = data["networks"]
    power = data.get("power_managements") or (
        [data["power_management"]] if data.get("power_management") else []
    )
    native["power"] = [
        _ipmi_power(p.get("args") or {}, i, nodes)
        if p.get("driver") == "ipmi"
        else {"driver": p.get("driver", ""), "args": p.get("args") or {}}
        for i, p in enumerate(power)
    ]
    return native


_BMC_KEYS = {
    "address": "address",
    "port": "port",
    "username": "username",
    "password_file": "passwordFile",
    "passwordFile": "passwordFile",
}


def _ipmi_power(args: dict[str, Any], i: int, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """os-faults' ipmi `mac_to_bmc` / `fqdn_to_bmc` become the nodes' `bmc` (passwordFile
    only: inline passwords are refused); the backend covers exactly those nodes."""
    field = f"power_managements[{i}].args"
    unknown = sorted(set(args) - {"mac_to_bmc", "fqdn_to_bmc"})
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", "unknown os-faults ipmi option")
    by_key = {
        "mac_to_bmc": {str(n["mac"]).lower(): n for n in nodes if n.get("mac")},
        "fqdn_to_bmc": {n["fqdn"]: n for n in nodes},
    }
    covered: list[str] = []
    for key, index in by_key.items():
        for name, bmc in (args.get(key) or {}).items():
            where = f"{field}.{key}.{name}"
            if "password" in bmc:
                raise ConfigError(
                    f"{where}.password",
                    "inline passwords are not read",
                    "put the password in a file (mode 0600) and give its path as passwordFile",
                )
            node = index.get(str(name).lower() if key == "mac_to_bmc" else str(name))
            if node is None:
                what = "mac" if key == "mac_to_bmc" else "fqdn"
                raise ConfigError(where, f"no node with {what} {name}", "list it in node_discover")
            bad = sorted(set(bmc) - set(_BMC_KEYS))
            if bad or "address" not in bmc:
                raise ConfigError(
                    f"{where}.{bad[0] if bad else 'address'}",
                    "unknown BMC option" if bad else "missing",
                    "give address, username, passwordFile and optionally port",
                )
            node["bmc"] = {_BMC_KEYS[k]: v for k, v in bmc.items()}
            if node["fqdn"] not in covered:
                covered.append(node["fqdn"])
    return {"driver": "ipmi", "nodes": covered, "args": {}}

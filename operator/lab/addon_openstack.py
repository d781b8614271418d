"""Lab add-on `openstack`: a real OpenStack control plane on 127.0.0.1 around the lab nodes.

`up` installs Debian's mariadb-server and rabbitmq-server when missing and the pinned
2025.1 (Epoxy) services into a venv of their own (`openstack_venv`, cached per machine), then
starts, each listening on 127.0.0.1 only at a port chosen free now (`ports.json`):

- epmd and RabbitMQ in a network namespace of their own (`<lab prefix>mq`, loopback only:
  epmd always listens on ::1 as well, which must not happen on the host), reached through
  a socat on 127.0.0.1 that enters the namespace per connection; MariaDB (own datadir,
  socket and port). The DB schemas of every service are synced once per machine
  and pin set and kept as a datadir snapshot in the cache (cell mappings are templated, so
  the snapshot is valid with other ports and passwords);
- Keystone (admin user and project, region RegionOne, endpoints), Placement, Nova API,
  Glance (file store) and a Neutron server (ML2, no agents), each under gunicorn from the
  venv (`assets/openstack_wsgi.py` hides gunicorn's argv from oslo.config);
- nova-conductor, nova-scheduler and one nova-compute per lab node (fake virt driver,
  `host` = the node's name, `my_ip` = its control address), report_interval 2 s and
  service_down_time 8 s; cells v2 with the computes discovered;
- a flavor `m1.tiny` and an image `faultline-fake`. Servers boot with `networks="none"`
  (no agent can bind a port).

It writes `clouds.yaml` (cloud `faultline-lab`, mode 0600) and returns
`{"openstack": {"cloud": "faultline-lab", "cloudsFile": PATH}}` for the target's top level.
Every process is recorded by pid (`openstack_services`); `down` stops them all, also for a
half-started add-on. `compute_pid`, `kill_compute` and `start_compute` let tests kill and
bring back one node's nova-compute.
"""

from __future__ import annotations

import base64
import importlib.resources
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from faultline.lab import network, openstack_venv, packages
from faultline.lab import openstack_config as cfg
from faultline.lab import openstack_services as svc
from faultline.lab.addons import addon_dir
from faultline.lab.system import LabError, ProcessId, run

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

NAME = "openstack"
CLOUD = "faultline-lab"
CLOUDS_FILE = "clouds.yaml"
PORTS_FILE = "ports.json"
TIMINGS_FILE = "timings.json"
PACKAGES = (
    "mariadb-server",
    "rabbitmq-server",
    "socat",
)  # mariadb-client-core comes with the server
RABBITMQ_SERVER = "/usr/lib/rabbitmq/lib/rabbitmq_server-{version}/sbin/rabbitmq-server"
EPMD = "/usr/bin/epmd"
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "/usr/bin/mariadb-install-db"
MYSQL = "/usr/bin/mariadb"
FLAVOR = {"name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1}
IMAGE = {"name": "faultline-fake", "data": "faultline lab: a fake disk image\n"}
#: Bump when the schema steps change, so an old DB snapshot is not reused.
SNAPSHOT_FORMAT = "1"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
START_TIMEOUT = 180.0
SYNC_TIMEOUT = 900.0
#: Stop order: computes first, the message bus and the database last.
STOP_ORDER = (
    "nova-conductor",
    "nova-scheduler",
    "nova-api",
    "neutron",
    "glance",
    "placement",
    "keystone",
    "rabbitmq-forward",
    "rabbitmq",
    "mariadb",
    "epmd",
)
# service -> (module, config env prefix, gunicorn workers, threads per worker). Keystone runs
# one process with threads: its cache is in-process (a second worker would serve a stale
# catalog or role list that the first one changed).
WSGI = {
    "keystone": ("keystone.wsgi.api", "OS_KEYSTONE", 1, 4),
    "placement": ("placement.wsgi.api", "OS_PLACEMENT", 1, 1),
    "nova-api": ("nova.wsgi.osapi_compute", "OS_NOVA", 2, 1),
    "glance": ("glance.wsgi.api", "OS_GLANCE", 1, 1),
    "neutron": ("neutron.wsgi.api", "OS_NEUTRON", 1, 1),
}


# -- where things are ------------------------------------------------------------------------


def state_root(lab: Lab) -> Path:
    """The add-on's directory, without creating it (down must not)."""
    return lab.state_dir / "addons" / NAME


def clouds_path(lab: Lab) -> Path:
    return state_root(lab) / CLOUDS_FILE


def mq_netns(lab: Lab) -> str:
    """The namespace RabbitMQ and epmd run in (named with the lab's prefix, so a lab
    teardown by prefix removes it too)."""
    return f"{lab.state().prefix}mq"


def _in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def port_open_in(netns: str, port: int) -> bool:
    """Whether something accepts TCP on 127.0.0.1:`port` inside `netns`."""
    probe = f"exec 3<>/dev/tcp/{cfg.ADDRESS}/{port}"
    try:
        done = run(_in_netns(netns, ["bash", "-c", probe]), check=False, timeout=5)
    except LabError:  # timed out: not listening yet, as far as the waiter is concerned
        return False
    return done.returncode == 0


def ports(lab: Lab) -> dict[str, int]:
    """The ports of this lab's services (`ports.json`), empty when the add-on is down."""
    try:
        data: dict[str, int] = json.loads((state_root(lab) / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data


def compute_name(node: str) -> str:
    return f"nova-compute-{node}"


def compute_pid(lab: Lab, node: str) -> int | None:
    """The pid of the nova-compute of lab node `node`, None when it is not running."""
    proc = svc.process(state_root(lab), compute_name(lab.node(node).name))
    return proc.pid if proc is not None and proc.alive() else None


def kill_compute(lab: Lab, node: str) -> int:
    """SIGKILL the nova-compute of `node` (like a crash); returns the pid it had."""
    pid = svc.kill(state_root(lab), compute_name(lab.node(node).name))
    if pid is None:
        raise LabError(f"the nova-compute of {node} is not running")
    return pid


def start_compute(lab: Lab, node: str, timeout: float = 60.0) -> int:
    """Start the nova-compute of `node` again (as `up` did) and wait until it reports
    to the database; returns its pid."""
    name = lab.node(node).name
    directory = state_root(lab)
    proc = svc.restart_recorded(directory, compute_name(name))
    before = _report_count(directory, name)
    svc.wait_for(
        directory,
        compute_name(name),
        lambda: _report_count(directory, name) > before,
        timeout,
        "to report to the database",
    )
    return proc.pid


# -- installing ------------------------------------------------------------------------------


def rabbitmq_server() -> str:
    version = run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"]).stdout
    upstream = version.split(":")[-1].split("-")[0]
    path = RABBITMQ_SERVER.format(version=upstream)
    if not Path(path).is_file():
        raise LabError(f"rabbitmq-server {version}: {path} not found")
    return path


def _asset(name: str) -> bytes:
    return (importlib.resources.files("faultline.lab") / "assets" / name).read_bytes()


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(mode)


# -- the database ----------------------------------------------------------------------------


def _mysql(paths: cfg.Paths, sql: str, timeout: float = 60.0) -> str:
    """Run SQL as the DB's root over its Unix socket (root authenticates by socket)."""
    sock = paths.var / "mariadb.sock"
    result = run(
        [MYSQL, "--no-defaults", "-S", str(sock), "-u", "root", "-N", "-B", "-e", sql],
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"SQL on the lab's MariaDB failed: {svc.redact(result.stderr.strip())}")
    return result.stdout


def _report_count(directory: Path, host: str, binary: str = "nova-compute") -> int:
    """How often Nova service `binary` on `host` has reported (-1: not registered yet)."""
    if not (_NAME.fullmatch(host) and _NAME.fullmatch(binary)):
        raise LabError(f"not a Nova host / binary name: {host!r} / {binary!r}")
    paths = cfg.Paths(directory, Path("/"))
    query = (
        "SELECT report_count FROM nova_cell1.services WHERE deleted=0 AND "  # noqa: S608 - names checked above
        f"host='{host}' AND `binary`='{binary}'"
    )
    try:
        out = _mysql(paths, query, timeout=10).split()
    except LabError:
        return -1
    return int(out[0]) if out else -1


def snapshot_dir() -> Path:
    mariadb = run([MARIADBD, "--version"]).stdout.split()[2]
    return openstack_venv.cache_root() / (
        f"openstack-{openstack_venv.key()}-db-{SNAPSHOT_FORMAT}-{mariadb}"
    )


class Setup:
    """One `up`: the lab, its paths, ports, secrets; steps as methods."""

    def __init__(self, lab: Lab, directory: Path, venv: Path) -> None:
        self.lab = lab
        self.directory = directory
        self.paths = cfg.Paths(directory, venv)
        self.venv = venv
        chosen: set[int] = set()
        values = {}
        for field in cfg.Ports.__dataclass_fields__:
            port = svc.free_port()
            while port in chosen:
                port = svc.free_port()
            chosen.add(port)
            values[field] = port
        self.ports = cfg.Ports(**values)
        self.secrets = cfg.Secrets(
            admin=secrets.token_urlsafe(16),
            service=secrets.token_urlsafe(16),
            db=secrets.token_urlsafe(16),
            rabbit=secrets.token_urlsafe(16),
        )
        self.controller = lab.nodes[0].name  # conductor and scheduler "run" there
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()

    # -- helpers ---------------------------------------------------------------------------

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self.started, 2)
        (self.directory / TIMINGS_FILE).write_text(json.dumps(self.timings, indent=2) + "\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
            "/sbin:/bin",
            "HOME": str(self.paths.var / "home"),
            "LANG": "C.UTF-8",
            "OS_CLIENT_CONFIG_FILE": str(self.directory / CLOUDS_FILE),
        }
        env.update(extra)
        return env

    def tool(self, name: str, argv: list[str], timeout: float = SYNC_TIMEOUT, **env: str) -> str:
        """Run a venv command to completion, output into logs/<name>.log."""
        log = svc.log_path(self.directory, name)
        log.parent.mkdir(exist_ok=True)
        with open(log, "ab") as out:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env(**env),
                    cwd=self.directory,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise svc.failed(self.directory, name, f"timed out after {timeout:g} s") from None
        if done.returncode != 0:
            raise svc.failed(self.directory, name, f"failed (rc {done.returncode})")
        return log.read_text(errors="replace")

    def python(self, name: str, script: str, args: list[str], spec: dict[str, Any]) -> None:
        """Run an asset script with the venv's python, its input as JSON on stdin."""
        path = self.directory / script
        path.write_bytes(_asset(script))
        log = svc.log_path(self.directory, name)
        with open(log, "ab") as out:
            done = subprocess.run(
                [str(self.venv / "bin" / "python"), str(path), *args],
                input=json.dumps(spec).encode(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.directory,
                timeout=START_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            raise svc.failed(self.directory, name, f"failed (rc {done.returncode})")

    def http_ready(self, port: int) -> Callable[[], bool]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def ready() -> bool:
            try:
                with opener.open(f"http://{cfg.ADDRESS}:{port}/", timeout=2) as answer:
                    return int(answer.status) < 500
            except urllib.error.HTTPError as exc:
                return exc.code < 500
            except OSError:
                return False

        return ready

    # -- files -----------------------------------------------------------------------------

    def write_files(self) -> None:
        p, ports, sec = self.paths, self.ports, self.secrets
        (p.var / "home").mkdir(parents=True, exist_ok=True)
        (self.directory / PORTS_FILE).write_text(json.dumps(asdict(ports), indent=2) + "\n")
        _write(p.etc / "rabbitmq" / "rabbitmq.conf", cfg.rabbitmq_conf(ports, sec, p.var))
        _write(p.etc / "rabbitmq" / "enabled_plugins", "[].\n")
        _write(p.conf("keystone"), cfg.keystone_conf(p, ports, sec))
        _write(p.conf("placement"), cfg.placement_conf(p, ports, sec))
        _write(p.conf("nova"), cfg.nova_conf(p, ports, sec, self.controller))
        _write(p.conf("glance"), cfg.glance_conf(p, ports, sec))
        _write(p.conf("neutron"), cfg.neutron_conf(p, ports, sec))
        for node in self.lab.nodes:
            _write(
                p.etc / "nova" / f"compute-{node.name}.conf",
                cfg.nova_compute_conf(p, node.name, node.ip),
            )
            (p.var / "nova-compute" / node.name / "lock").mkdir(parents=True, exist_ok=True)
        for name in ("fernet-keys", "credential-keys"):
            keys = p.etc / "keystone" / name
            keys.mkdir(mode=0o700, parents=True, exist_ok=True)
            for index in ("0", "1"):
                _write(keys / index, base64.urlsafe_b64encode(os.urandom(32)).decode())
        for sub in (
            "nova/lock",
            "glance/images",
            "glance/staging",
            "glance/tasks",
            "glance/lock",
            "neutron/lock",
        ):
            (p.var / sub).mkdir(parents=True, exist_ok=True)
        (p.etc / "openstack_wsgi.py").write_bytes(_asset("openstack_wsgi.py"))
        # Nova's WSGI app loads its pipeline from the first config file it is given.
        shutil.copyfile(
            self.venv / "etc" / "nova" / "api-paste.ini", p.etc / "nova" / "api-paste.ini"
        )
        clouds = {
            "clouds": {
                CLOUD: {
                    "auth": {
                        "auth_url": ports.url("keystone"),
                        "username": "admin",
                        "password": sec.admin,
                        "project_name": "admin",
                        "user_domain_name": "Default",
                        "project_domain_name": "Default",
                    },
                    "region_name": cfg.REGION,
                    "interface": "public",
                    "identity_api_version": 3,
                }
            }
        }
        _write(self.directory / CLOUDS_FILE, yaml.safe_dump(clouds, sort_keys=False))

    # -- message bus and database ----------------------------------------------------------

    def start_rabbitmq(self) -> None:
        directory, ports, netns = self.directory, self.ports, mq_netns(self.lab)
        run(["ip", "netns", "add", netns])
        run(["ip", "-n", netns, "link", "set", "lo", "up"])
        svc.start(
            directory,
            "epmd",
            _in_netns(netns, [EPMD, "-address", cfg.ADDRESS, "-port", str(ports.epmd)]),
            self.env(),
        )
        svc.wait_for(directory, "epmd", lambda: port_open_in(netns, ports.epmd), 30, "to listen")
        var = self.paths.var / "rabbitmq"
        var.mkdir(parents=True, exist_ok=True)
        home = var / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        cookie = home / ".erlang.cookie"
        _write(cookie, secrets.token_hex(20), 0o400)
        nodename = f"faultline{self.lab.state().index}@localhost"
        env = self.env(
            HOME=str(home),
            RABBITMQ_NODENAME=nodename,
            RABBITMQ_NODE_IP_ADDRESS=cfg.ADDRESS,
            RABBITMQ_NODE_PORT=str(ports.rabbit),
            RABBITMQ_DIST_PORT=str(ports.rabbit_dist),
            ERL_EPMD_ADDRESS=cfg.ADDRESS,
            ERL_EPMD_PORT=str(ports.epmd),
            RABBITMQ_CONFIG_FILE=str(self.paths.etc / "rabbitmq" / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.paths.etc / "rabbitmq" / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(self.paths.etc / "rabbitmq" / "rabbitmq-env.conf"),
            RABBITMQ_MNESIA_BASE=str(var / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.directory / svc.LOGS),
            RABBITMQ_PID_FILE=str(var / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        _write(self.paths.etc / "rabbitmq" / "rabbitmq-env.conf", "# empty: all set by env\n")
        svc.start(directory, "rabbitmq", _in_netns(netns, [rabbitmq_server()]), env, cwd=var)
        port = ports.rabbit
        inner = " ".join(_in_netns(netns, ["socat", "STDIO", f"TCP\\:{cfg.ADDRESS}\\:{port}"]))
        forward = ["socat", f"TCP-LISTEN:{port},bind={cfg.ADDRESS},reuseaddr,fork", f"EXEC:{inner}"]
        svc.start(directory, "rabbitmq-forward", forward, self.env())

    def wait_rabbitmq(self) -> None:
        netns, port = mq_netns(self.lab), self.ports.rabbit
        svc.wait_for(
            self.directory,
            "rabbitmq",
            lambda: port_open_in(netns, port),
            START_TIMEOUT,
            "to listen",
        )
        svc.wait_for(
            self.directory, "rabbitmq-forward", lambda: svc.port_open(port), 30, "to listen"
        )

    def start_mariadb(self) -> bool:
        """Start MariaDB, from the cached snapshot when there is one; True when it was."""
        data = self.paths.var / "mariadb"
        snapshot = snapshot_dir()
        warm = (snapshot / openstack_venv.COMPLETE).is_file()
        if warm:
            shutil.copytree(snapshot / "data", data, symlinks=True)
        else:
            data.mkdir(parents=True)
            self.tool(
                "mariadb-install-db",
                [
                    MARIADB_INSTALL_DB,
                    "--no-defaults",
                    f"--datadir={data}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                timeout=300,
            )
        self._run_mariadb()
        return warm

    def _run_mariadb(self) -> None:
        svc.start(
            self.directory,
            "mariadb",
            [MARIADBD, *cfg.mariadb_args(self.paths, self.ports)],
            self.env(),
        )
        sock = self.paths.var / "mariadb.sock"

        def ready() -> bool:
            if not (sock.exists() and svc.port_open(self.ports.mariadb)):
                return False
            try:
                _mysql(self.paths, "SELECT 1", timeout=5)
            except LabError:
                return False
            return True

        svc.wait_for(self.directory, "mariadb", ready, START_TIMEOUT, "to accept connections")

    def grant(self) -> None:
        pw = self.secrets.db
        _mysql(
            self.paths,
            " ".join(
                [f"CREATE DATABASE IF NOT EXISTS {db};" for db in cfg.DATABASES]
                + [
                    f"CREATE USER IF NOT EXISTS '{cfg.DB_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';",
                    f"ALTER USER '{cfg.DB_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';",
                    f"GRANT ALL PRIVILEGES ON *.* TO '{cfg.DB_USER}'@'127.0.0.1';",
                    "FLUSH PRIVILEGES;",
                ]
            ),
        )

    def sync_schemas(self) -> None:
        """Every service's schema (the slow part of a first start), in parallel."""
        bin_ = self.venv / "bin"
        conf = self.paths.conf
        db_cell0 = cfg.CELL_DB_TEMPLATE % "nova_cell0"
        db_cell1 = cfg.CELL_DB_TEMPLATE % "nova_cell1"

        def nova() -> None:
            manage = [str(bin_ / "nova-manage"), "--config-file", str(conf("nova"))]
            self.tool("nova-manage", [*manage, "api_db", "sync"])
            self.tool(
                "nova-manage", [*manage, "cell_v2", "map_cell0", "--database_connection", db_cell0]
            )
            self.tool(
                "nova-manage",
                [
                    *manage,
                    "cell_v2",
                    "create_cell",
                    "--name",
                    "cell1",
                    "--database_connection",
                    db_cell1,
                    "--transport-url",
                    cfg.CELL_TRANSPORT_TEMPLATE,
                ],
            )
            self.tool("nova-manage", [*manage, "db", "sync"])

        jobs: list[Callable[[], Any]] = [
            nova,
            lambda: self.tool(
                "keystone-manage",
                [str(bin_ / "keystone-manage"), "--config-file", str(conf("keystone")), "db_sync"],
            ),
            lambda: self.tool(
                "placement-manage",
                [
                    str(bin_ / "placement-manage"),
                    "--config-file",
                    str(conf("placement")),
                    "db",
                    "sync",
                ],
            ),
            lambda: self.tool(
                "glance-manage",
                [str(bin_ / "glance-manage"), "--config-file", str(conf("glance")), "db_sync"],
            ),
            lambda: self.tool(
                "neutron-db-manage",
                [
                    str(bin_ / "neutron-db-manage"),
                    "--config-file",
                    str(conf("neutron")),
                    "upgrade",
                    "heads",
                ],
            ),
        ]
        _parallel(jobs)

    def save_snapshot(self) -> None:
        """Stop MariaDB cleanly, keep its datadir as the machine's snapshot, start again."""
        proc = svc.process(self.directory, "mariadb")
        if proc is not None:
            svc.stop(proc, timeout=60)
        snapshot = snapshot_dir()
        with openstack_venv.locked(snapshot.with_name(snapshot.name + ".lock")):
            if not (snapshot / openstack_venv.COMPLETE).is_file():
                shutil.rmtree(snapshot, ignore_errors=True)
                snapshot.mkdir(parents=True)
                shutil.copytree(self.paths.var / "mariadb", snapshot / "data", symlinks=True)
                (snapshot / openstack_venv.COMPLETE).write_text(f"{time.time()}\n")
        self._run_mariadb()

    # -- OpenStack services ----------------------------------------------------------------

    def start_wsgi(self, service: str, port: int, conf_dir: str, conf_file: str) -> None:
        module, prefix, workers, threads = WSGI[service]
        extra: dict[str, str] = {}
        argv = [
            str(self.venv / "bin" / "gunicorn"),
            "--bind",
            f"{cfg.ADDRESS}:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "300",
            "--graceful-timeout",
            "5",
            "--name",
            f"faultline-{service}",
            "--chdir",
            str(self.paths.etc),
            "openstack_wsgi:application",
        ]
        if service == "neutron":
            extra["FAULTLINE_CONFIGURE_MAPPERS"] = "1"
        env = self.env(
            **extra,
            FAULTLINE_WSGI_MODULE=module,
            **{
                f"{prefix}_CONFIG_DIR": str(self.paths.etc / conf_dir),
                f"{prefix}_CONFIG_FILES": conf_file,
            },
        )
        svc.start(self.directory, service, argv, env)

    def wait_http(self, service: str, port: int) -> None:
        svc.wait_for(
            self.directory,
            service,
            self.http_ready(port),
            START_TIMEOUT,
            f"to answer HTTP on {cfg.ADDRESS}:{port}",
        )

    def bootstrap_keystone(self) -> None:
        url = self.ports.url("keystone")
        self.tool(
            "keystone-manage",
            [
                str(self.venv / "bin" / "keystone-manage"),
                "--config-file",
                str(self.paths.conf("keystone")),
                "bootstrap",
                "--bootstrap-admin-url",
                url,
                "--bootstrap-internal-url",
                url,
                "--bootstrap-public-url",
                url,
                "--bootstrap-region-id",
                cfg.REGION,
            ],
            timeout=START_TIMEOUT,
            OS_BOOTSTRAP_PASSWORD=self.secrets.admin,
        )

    def identity(self) -> None:
        self.python(
            "setup-identity",
            "openstack_setup.py",
            ["identity"],
            {
                "service_password": self.secrets.service,
                "users": list(cfg.SERVICE_USERS),
                "endpoints": {
                    name: [stype, self.ports.url(name)]
                    for name, (stype, _) in cfg.ENDPOINTS.items()
                },
            },
        )

    def start_nova_service(self, binary: str, name: str, *extra_conf: Path) -> ProcessId:
        argv = [str(self.venv / "bin" / binary), "--config-file", str(self.paths.conf("nova"))]
        for conf in extra_conf:
            argv += ["--config-file", str(conf)]
        return svc.start(self.directory, name, argv, self.env())

    def wait_reported(self, name: str, host: str, binary: str) -> None:
        svc.wait_for(
            self.directory,
            name,
            lambda: _report_count(self.directory, host, binary) > 0,
            START_TIMEOUT,
            "to report to the database",
        )

    def start_computes(self) -> None:
        for node in self.lab.nodes:
            self.start_nova_service(
                "nova-compute",
                compute_name(node.name),
                self.paths.etc / "nova" / f"compute-{node.name}.conf",
            )

    def wait_computes(self) -> None:
        names = [n.name for n in self.lab.nodes]

        def registered() -> bool:
            rows = _mysql(
                self.paths, "SELECT host FROM nova_cell1.compute_nodes WHERE deleted=0", timeout=10
            ).split()
            return set(names) <= set(rows)

        for name in names:
            self.wait_reported(compute_name(name), name, "nova-compute")
        svc.wait_for(
            self.directory,
            compute_name(names[0]),
            registered,
            START_TIMEOUT,
            "until every nova-compute registered its compute node",
        )
        self.tool(
            "nova-manage",
            [
                str(self.venv / "bin" / "nova-manage"),
                "--config-file",
                str(self.paths.conf("nova")),
                "cell_v2",
                "discover_hosts",
            ],
            timeout=START_TIMEOUT,
        )

        def mapped() -> bool:
            rows = _mysql(self.paths, "SELECT host FROM nova_api.host_mappings", timeout=10)
            return set(names) <= set(rows.split())

        svc.wait_for(self.directory, "nova-manage", mapped, 30, "until every host is mapped")

    def resources(self) -> None:
        self.python(
            "setup-resources",
            "openstack_setup.py",
            ["resources"],
            {"flavor": FLAVOR, "image": IMAGE},
        )

    # -- the whole start -------------------------------------------------------------------

    def run(self) -> None:
        self.write_files()
        self.start_rabbitmq()
        warm = self.start_mariadb()
        self.mark("mariadb up (snapshot)" if warm else "mariadb initialised")
        self.grant()
        if not warm:
            self.sync_schemas()
            self.mark("schemas synced")
            self.save_snapshot()
            self.mark("snapshot saved")
        p = self.ports
        self.start_wsgi("keystone", p.keystone, "keystone", "keystone.conf")
        self.bootstrap_keystone()
        self.wait_http("keystone", p.keystone)
        self.mark("keystone up")
        self.identity()
        self.mark("identity set up")
        self.wait_rabbitmq()
        self.mark("rabbitmq up")
        self.start_wsgi("placement", p.placement, "placement", "placement.conf")
        self.start_wsgi("nova-api", p.nova, "nova", "api-paste.ini;nova.conf")
        self.start_wsgi("glance", p.glance, "glance", "glance-api.conf")
        self.start_wsgi("neutron", p.neutron, "neutron", "neutron.conf")
        self.start_nova_service("nova-conductor", "nova-conductor")
        self.start_nova_service("nova-scheduler", "nova-scheduler")
        self.wait_reported("nova-conductor", self.controller, "nova-conductor")
        self.mark("conductor up")
        self.start_computes()
        self.wait_http("placement", p.placement)
        self.wait_http("nova-api", p.nova)
        self.wait_http("glance", p.glance)
        self.wait_http("neutron", p.neutron)
        self.mark("APIs up")
        self.wait_reported("nova-scheduler", self.controller, "nova-scheduler")
        self.wait_computes()
        self.mark("computes up and discovered")
        self.resources()
        self.mark("flavor and image")


def _parallel(jobs: list[Callable[[], Any]]) -> None:
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures: list[Future[Any]] = [pool.submit(job) for job in jobs]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


class OpenStackAddon:
    def up(self, lab: Lab) -> dict[str, Any]:
        self.down(lab)  # leftovers of an earlier run
        started = time.monotonic()
        packages.ensure(PACKAGES)
        venv, install_seconds = openstack_venv.ensure()
        directory = addon_dir(lab, NAME)
        setup = Setup(lab, directory, venv)
        setup.timings["venv install"] = round(install_seconds, 2)
        setup.started = started
        setup.run()
        return {"openstack": {"cloud": CLOUD, "cloudsFile": str(directory / CLOUDS_FILE)}}

    def down(self, lab: Lab) -> None:
        directory = state_root(lab)
        if not directory.is_dir():
            return
        computes = sorted(n for n in svc.recorded(directory) if n.startswith("nova-compute-"))
        svc.stop_all(directory, order=(*computes, *STOP_ORDER))
        try:
            netns: str | None = mq_netns(lab)
        except LabError:  # no lab state left: the lab's teardown by prefix removes it
            netns = None
        if netns is not None and netns in network.netns_names():
            run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(directory, ignore_errors=True)


ADDON = OpenStackAddon()

"""A real two-node Ganeti 3.0 cluster on one machine, in a namespace of its own.

The mechanics behind the `ganeti` lab add-on (`addon_ganeti.py` holds the add-on itself):

- One holder process (`unshare --net --mount --pid --fork --mount-proc`, with `tini` as the
  namespace's init) owns a network, mount and PID namespace. Everything Ganeti runs lives
  in there; SIGKILL to that init ends all of it. The holder runs in a memory cgroup named
  with the lab's prefix, so the lab's crash cleanup (`destroy`) reaps it too.
- Node addresses sit on the namespace's `lo` (Ganeti refuses loopback addresses, so they
  are 10.252.K.24x: on the host that range is blackholed by the lab's guard route, so
  nothing ever leaves the machine for them). Names resolve through a private /etc/hosts.
- Private mounts inside: /etc/hosts, /etc/ssh (sshd's own host keys and config, the ssh
  client's config), /root (the client key `gnt-node add` uses), /srv (a no-op OS
  definition under /srv/ganeti/os), a tmpfs on /run.
- Two nodes on one machine: Ganeti's virtual-cluster mode (GANETI_ROOTDIR per node under
  `vc/<node name>`, seen as /run/gvc/<node name> inside to keep Ganeti's socket paths
  short; GANETI_HOSTNAME); the state dirs are world-traversable because the
  daemons run as gnt-* users. An sshd inside the namespace lets `gnt-node add` reach node 2.
- The cluster: fake hypervisor, diskless template, relaxed ipolicy, routed NICs, master
  netdev `lo`; instances use the no-op OS and get NIC IPs.
- RAPI listens in the namespace; a socat on 127.0.0.1:<free port> forwards each connection
  into it (`nsenter --net`), the only thing listening outside the namespace.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faultline.lab import cgroups
from faultline.lab.system import NODE_ENV, LabError, ProcessId, children, run

DOMAIN = "ganeti.test"
CLUSTER = f"cluster.{DOMAIN}"
NODES = (f"gnt1.{DOMAIN}", f"gnt2.{DOMAIN}")
INSTANCES = (f"inst1.{DOMAIN}", f"inst2.{DOMAIN}", f"inst3.{DOMAIN}")
OS_NAME = "noop"
RAPI_USER = "faultline"
RAPI_PORT = 5080
MEMORY_LIMIT = 1024 * 1024 * 1024
START_TIMEOUT = 60.0
GNT_TIMEOUT = 180.0
INFO = "cluster.json"
PASSWORD_FILE = "rapi-password"  # noqa: S105 - a file name
CERT_FILE = "rapi.pem"
HOLDER_READY = "holder-ready"
#: Where `vc/` appears inside the namespace: Ganeti's unix sockets live below each node's
#: root and a socket path may not exceed 107 bytes, which a pytest tmp dir easily does.
INNER_VC = "/run/gvc"
#: A virtual node's root: what ensure-dirs expects, and the path down to the daemons' dirs
#: (world-traversable: the daemons run as gnt-* users).
VC_DIRS = (
    "etc/default",
    "etc/ganeti",
    "var/lock",
    "var/lib/ganeti",
    "var/log/ganeti",
    "var/run/ganeti",
)
VC_TRAVERSED = (".", "etc", "etc/default", "var", "var/lib", "var/log", "var/run")
IPOLICY = (
    "min:disk-size=0,cpu-count=1,disk-count=0,memory-size=1,nic-count=0,spindle-use=0"
    "/max:disk-size=1048576,cpu-count=8,disk-count=16,memory-size=32768,nic-count=8,"
    "spindle-use=12"
)


@dataclass
class ClusterInfo:
    """What the add-on records (cluster.json) and tests read: names, addresses, pids."""

    directory: str
    prefix: str
    cluster: str
    cluster_ip: str
    nodes: dict[str, str]  # name -> primary IP
    instances: dict[str, str]  # name -> NIC IP
    placement: dict[str, str]  # instance -> primary node
    port: int = 0
    url: str = ""
    processes: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (pid, start)

    @property
    def dir(self) -> Path:
        return Path(self.directory)

    @property
    def master(self) -> str:
        return NODES[0]

    def save(self) -> None:
        (self.dir / INFO).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ClusterInfo | None:
        try:
            data = json.loads((directory / INFO).read_text())
        except (OSError, ValueError):
            return None
        data["processes"] = {k: tuple(v) for k, v in data.get("processes", {}).items()}
        return cls(**data)

    def process(self, name: str) -> ProcessId | None:
        if name not in self.processes:
            return None
        pid, start = self.processes[name]
        return ProcessId(pid, start)

    def remember(self, name: str, proc: ProcessId) -> None:
        self.processes[name] = (proc.pid, proc.start)
        self.save()

    @property
    def cgroup(self) -> Path:
        return cgroups.memory_base() / f"{self.prefix}gnt"


def plan(directory: Path, prefix: str, index: int) -> ClusterInfo:
    net = f"10.252.{index % 256}"
    nodes = {name: f"{net}.{241 + i}" for i, name in enumerate(NODES)}
    instances = {name: f"{net}.{245 + i}" for i, name in enumerate(INSTANCES)}
    placement = {name: NODES[i % len(NODES)] for i, name in enumerate(INSTANCES)}
    return ClusterInfo(
        directory=str(directory),
        prefix=prefix,
        cluster=CLUSTER,
        cluster_ip=f"{net}.240",
        nodes=nodes,
        instances=instances,
        placement=placement,
    )


# -- files -----------------------------------------------------------------------------------


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(mode)


def write_files(info: ClusterInfo) -> None:
    d = info.dir
    hosts = ["127.0.0.1 localhost", f"{info.cluster_ip} {info.cluster} cluster"]
    hosts += [f"{ip} {name} {name.split('.')[0]}" for name, ip in info.nodes.items()]
    hosts += [f"{ip} {name} {name.split('.')[0]}" for name, ip in info.instances.items()]
    _write(d / "hosts", "\n".join(hosts) + "\n")

    ssh = d / "etc-ssh"
    ssh.mkdir(mode=0o755, exist_ok=True)
    for kind in ("ed25519", "rsa"):
        key = ssh / f"ssh_host_{kind}_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "ganeti-lab", "-f", str(key)])
    listen = "\n".join(f"ListenAddress {ip}" for ip in info.nodes.values())
    _write(
        ssh / "sshd_config",
        f"""\
# Faultline lab: the sshd of the Ganeti namespace (gnt-node add logs in through it).
{listen}
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_rsa_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /root/.ssh/authorized_keys
PidFile /run/sshd.pid
""",
    )
    _write(ssh / "ssh_config", "Host *\n  IdentityFile /root/.ssh/id_ed25519\n  BatchMode yes\n")

    root = d / "root"
    (root / ".ssh").mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    (root / ".ssh").chmod(0o700)
    key = root / ".ssh" / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ganeti-lab", "-f", str(key)])
    shutil.copyfile(key.with_suffix(".pub"), root / ".ssh" / "authorized_keys")
    # The node's host keys are known: Ganeti's own ssh calls bring their known_hosts file.
    host_key = (ssh / "ssh_host_ed25519_key.pub").read_text().split()
    known = [f"{name},{ip} {host_key[0]} {host_key[1]}" for name, ip in info.nodes.items()]
    _write(root / ".ssh" / "known_hosts", "\n".join(known) + "\n", 0o600)

    os_dir = d / "srv" / "ganeti" / "os" / OS_NAME
    os_dir.mkdir(parents=True, exist_ok=True)
    for part in (d / "srv", d / "srv" / "ganeti", d / "srv" / "ganeti" / "os", os_dir):
        part.chmod(0o755)
    for script in ("create", "import", "export", "rename", "verify"):
        _write(
            os_dir / script,
            "#!/bin/sh\n# a no-op OS: diskless instances need none\nexit 0\n",
            0o755,
        )
    _write(os_dir / "ganeti_api_version", "20\n")
    _write(os_dir / "parameters.list", "")

    vc = d / "vc"
    vc.mkdir(mode=0o755, exist_ok=True)
    for name, ip in info.nodes.items():
        root_dir = vc / name
        for sub in VC_DIRS:
            (root_dir / sub).mkdir(parents=True, exist_ok=True)
        for traversed in VC_TRAVERSED:
            (root_dir / traversed).chmod(0o755)
        _write(
            root_dir / "etc" / "default" / "ganeti",
            f"""\
# Faultline lab: virtual Ganeti node {name}.
NODED_ARGS='--no-mlock -b {ip}'
MASTERD_ARGS=''
RAPI_ARGS='-b 0.0.0.0 --require-authentication'
CONFD_ARGS='-b {ip}'
MOND_ARGS='-b {ip}'
WCONFD_ARGS=''
LUXID_ARGS=''
KVMD_ARGS=''
export GANETI_ROOTDIR='{INNER_VC}/{name}'
export GANETI_HOSTNAME='{name}'
""",
        )


def holder_script(info: ClusterInfo) -> str:
    d = info.dir
    addresses = " ".join(f"{ip}/32" for ip in info.nodes.values())
    return f"""\
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sshd /run/lock {INNER_VC}
mount --bind {d}/vc {INNER_VC}
mount --bind {d}/hosts /etc/hosts
mount --bind {d}/etc-ssh /etc/ssh
mount --bind {d}/root /root
mount --bind {d}/srv /srv
ip link set lo up
for a in {addresses}; do ip addr add "$a" dev lo; done
: > {d}/{HOLDER_READY}
exec tini -s -- sleep infinity
"""


# -- processes -------------------------------------------------------------------------------


def start_holder(info: ClusterInfo) -> ProcessId:
    path = info.cgroup
    cgroups.create(path, MEMORY_LIMIT)
    (info.dir / HOLDER_READY).unlink(missing_ok=True)
    argv = [
        "unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
        "--propagation", "private", "/bin/sh", "-c", holder_script(info),
    ]  # fmt: skip
    with open(info.dir / "holder.log", "ab") as out:
        child = subprocess.Popen(
            cgroups.join_argv(path, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(NODE_ENV),
            cwd="/",
        )
    proc = ProcessId.of(child.pid)
    if proc is None:
        raise LabError(
            f"the Ganeti namespace holder exited at start:\n{tail(info.dir / 'holder.log')}"
        )
    info.remember("unshare", proc)
    deadline = time.monotonic() + START_TIMEOUT
    while not (info.dir / HOLDER_READY).exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise LabError(
                f"the Ganeti namespace did not come up:\n{tail(info.dir / 'holder.log')}"
            )
        time.sleep(0.01)
    # The namespace's init (tini) is the unshare's only child.
    while True:
        kids = children(child.pid)
        if kids:
            init = ProcessId.of(kids[0])
            if init is not None:
                info.remember("init", init)
                return init
        if time.monotonic() > deadline:
            raise LabError("the Ganeti namespace has no init process")
        time.sleep(0.01)


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def inside(info: ClusterInfo, node: str, argv: Sequence[str]) -> list[str]:
    """argv running `argv` in the namespace as Ganeti node `node` (virtual-cluster env)."""
    init = info.process("init")
    if init is None:
        raise LabError("the Ganeti namespace is not up")
    env = {
        **NODE_ENV,
        "GANETI_ROOTDIR": f"{INNER_VC}/{node}",
        "GANETI_HOSTNAME": node,
    }
    return [
        "nsenter", "-t", str(init.pid), "--net", "--mount", "--pid", "--",
        "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv,
    ]  # fmt: skip


def gnt(
    info: ClusterInfo, argv: Sequence[str], node: str | None = None, timeout: float = GNT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a Ganeti command (as the master unless `node` says otherwise); raises on failure."""
    return run(inside(info, node or info.master, argv), timeout=timeout)


def chown(path: Path, user: str, group: str) -> None:
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)


def write_rapi_users(info: ClusterInfo, password: str) -> None:
    """RAPI's users file on every node (RAPI follows the master), read-write user."""
    for node in info.nodes:
        users = info.dir / "vc" / node / "var" / "lib" / "ganeti" / "rapi" / "users"
        users.parent.mkdir(parents=True, exist_ok=True)
        _write(users, f"# Faultline lab\n{RAPI_USER} {password} write\n", 0o640)
        chown(users, "gnt-rapi", "gnt-masterd")


def new_password(info: ClusterInfo) -> str:
    password = secrets.token_urlsafe(18)
    _write(info.dir / PASSWORD_FILE, password + "\n", 0o600)
    return password


def export_certificate(info: ClusterInfo) -> Path:
    """The RAPI certificate (without its key): what clients pin with caFile."""
    pem = (info.dir / "vc" / info.master / "var" / "lib" / "ganeti" / "rapi.pem").read_text()
    begin = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    target = info.dir / CERT_FILE
    _write(target, pem[begin:end] + "\n")
    return target


def create_cluster(info: ClusterInfo) -> None:
    for node in info.nodes:
        gnt(info, ["/usr/lib/ganeti/ensure-dirs"], node)
    # ensure-dirs keeps the daemons' dirs as Ganeti wants them; the path down to them
    # must stay traversable for the gnt-* users.
    gnt(info, ["/usr/sbin/sshd", "-f", "/etc/ssh/sshd_config", "-E", f"{info.dir}/sshd.log"])
    gnt(
        info,
        [
            "gnt-cluster", "init", "--no-etc-hosts", "--no-ssh-init", "--master-netdev=lo",
            "--enabled-disk-templates=diskless", "--enabled-hypervisors=fake",
            "--nic-parameters=mode=routed,link=100", f"--ipolicy-bounds-specs={IPOLICY}",
            info.cluster,
        ],
    )  # fmt: skip
    # Ganeti copies the RAPI users file to nodes it adds later: write it first.
    write_rapi_users(info, (info.dir / PASSWORD_FILE).read_text().strip())
    for node in list(info.nodes)[1:]:
        gnt(info, ["gnt-node", "add", "--no-ssh-key-check", node])
    write_rapi_users(info, (info.dir / PASSWORD_FILE).read_text().strip())

    def add(name: str) -> None:
        gnt(
            info,
            [
                "gnt-instance", "add", "-t", "diskless", "-o", OS_NAME, "--no-ip-check",
                "-n", info.placement[name], "--net", f"0:ip={info.instances[name]}",
                "-B", "memory=64,vcpus=1", name,
            ],
        )  # fmt: skip

    with ThreadPoolExecutor(len(info.instances)) as pool:  # one job each, run in parallel
        list(pool.map(add, info.instances))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_forwarder(info: ClusterInfo) -> int:
    """socat on 127.0.0.1:<free port>, one `nsenter --net` + socat per connection into the
    namespace, to RAPI on the cluster IP (so it follows the master)."""
    init = info.process("init")
    assert init is not None
    error = ""
    for _ in range(3):  # the free port may be taken before socat binds it
        port = free_port()
        inner = f"nsenter -t {init.pid} --net socat STDIO TCP\\:{info.cluster_ip}\\:{RAPI_PORT}"
        argv = [
            "socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{inner}",
        ]  # fmt: skip
        with open(info.dir / "socat.log", "ab") as out:
            child = subprocess.Popen(
                cgroups.join_argv(info.cgroup, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(NODE_ENV),
                cwd="/",
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and child.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                proc = ProcessId.of(child.pid)
                if proc is not None:
                    info.remember("socat", proc)
                    info.port = port
                    info.url = f"https://127.0.0.1:{port}"
                    info.save()
                    return port
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait(5)
        error = tail(info.dir / "socat.log")
    raise LabError(f"the RAPI forwarder did not start: {error}")


def wait_rapi(info: ClusterInfo, timeout: float = START_TIMEOUT) -> None:
    """Until RAPI answers through the forwarder with the pinned certificate."""
    ctx = ssl.create_default_context(cafile=str(info.dir / CERT_FILE))
    ctx.check_hostname = False  # pinned self-signed certificate without SAN
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with (
                socket.create_connection(("127.0.0.1", info.port), 5) as raw,
                ctx.wrap_socket(raw) as tls,
            ):
                tls.sendall(b"GET /version HTTP/1.0\r\nHost: rapi\r\n\r\n")
                if tls.recv(200).startswith(b"HTTP/"):  # 401 too: it answers
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise LabError(f"RAPI does not answer on 127.0.0.1:{info.port}: {last}")


# -- stopping --------------------------------------------------------------------------------


def stop(directory: Path, prefix: str | None = None) -> None:
    """Stop everything the add-on started, by recorded pid and by its cgroup (every process
    in it is ours); idempotent, also for a half-started cluster."""
    info = ClusterInfo.load(directory)
    if info is not None:
        for name in ("socat", "init", "unshare"):
            proc = info.process(name)
            if proc is not None:
                proc.kill()  # SIGKILL to the namespace's init ends every process inside
                proc.wait_gone(5)
        prefix = info.prefix
    if prefix is None:
        return
    with contextlib.suppress(LabError):
        path = cgroups.memory_base() / f"{prefix}gnt"
        if path.is_dir():
            cgroups.kill_all(path)  # socat's per-connection children
            cgroups.remove(path)

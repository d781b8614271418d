"""Real containers inside lab nodes, so container faults (start/terminate/restart) act on them.

Every node runs its own container named ``web`` (busybox httpd on :8080, ``--network=host``,
so it lives in the node's network namespace) under its own engine state; ``podman ps``,
``podman stop web``, ``podman inspect -f '{{.State.Running}}' web`` ... run over SSH on a
node see and change that node's container only.

Use from the lab:

1. ``ensure_packages(tool)`` once (installs busybox-static, and podman/docker.io if missing).
2. ``build_image(state_dir, tool)`` once per lab before the nodes boot (idempotent, ~0.2 s;
   ~40 ms when done already).
3. ``node_files(state_dir, node_name, tool)`` when preparing a node dir: bind-mount every
   ``host_source`` over its ``path_inside_node`` at each boot, in the dict's order, before
   anything replaces /tmp (state dirs often live there). It may create the in-node targets
   on the host when missing: /var/lib/containers or /var/lib/docker, empty directories that
   the engine itself creates on first use on any host.
4. ``node_boot_commands(tool)`` at every boot, inside the node (its mount, UTS, PID and net
   namespaces, its cgroup), after the mounts and after /run is a fresh tmpfs. They are
   idempotent, so a heal step may run them again. Nothing they start keeps the caller's
   stdout/stderr open (dockerd logs to /run/dockerd.log). 3 nodes in parallel: podman
   ~0.25 s (~0.1 s on later boots), docker ~0.8 s (~0.4 s on later boots).
5. docker only: ``remove_cgroups(node_name)`` after the node is powered off for good.

How it works (measured on Debian 12, cgroup v1, podman 4.3.1, docker.io 20.10):

- One image store, shared: ``podman import`` writes the image once into
  ``STATE/containers/images``; every node mounts it (read-only is fine) at
  /var/lib/containers/faultline-images and lists it as ``additionalimagestores``. Each node
  keeps its containers in its own graphroot (/var/lib/containers/storage, a per-node dir).
  Docker cannot share an image store between daemons: each node's dockerd imports the
  2 MB rootfs into its own /var/lib/docker at first boot.
- Per-boot state is on the node's /run tmpfs (runroot, libpod tmp_dir, file locks, events,
  crun/containerd state). After a power cut and boot, podman sees a fresh tmp_dir, resets
  every container to "created" and ``podman start web`` works; dockerd marks it exited.
- ``lock_type = "file"`` (locks under /run/libpod): the default SHM lock lives in the
  host's shared /dev/shm, and a node's boot would free all nodes' locks.
- ``cgroups = "disabled"``: podman makes no cgroup, so conmon and the container stay in the
  node's memory cgroup and nothing is left behind. Dockerd cannot do that; its containers
  go to /faultline-lab-docker/NODE in every hierarchy (not inside the node's cgroup, which
  the lab must be able to rmdir), emptied by the power cut and removed by remove_cgroups().
- The node's fresh sysfs (``mount -t sysfs``, or ``ip netns exec``) hides the host's cgroup
  mounts, and crun/runc need them: the first boot command mounts the v1 hierarchies (not
  the hybrid "unified" one: crun refuses hybrid mode with controllers in it) or cgroup2.
- conmon / containerd-shim are reparented to the node's tini; killing the node's init kills
  the containers with it (their PID namespaces are nested in the node's).
- The container's PID 1 is ``sh`` with a TERM trap, so ``stop`` takes milliseconds instead
  of the 10 s SIGKILL timeout a signal-ignoring PID 1 would cost.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from faultline.lab.system import LabError

IMAGE = "localhost/faultline-lab-busybox:latest"
CONTAINER = "web"
#: Both engines share the node's network namespace, so each `web` listens on its own port.
WEB_PORTS = {"podman": 8080, "docker": 8081}
TOOLS = ("podman", "docker")

BUSYBOX = Path("/bin/busybox")
# In-node paths (the same on every node; the per-node sources differ).
NODE_CONTAINERS_ETC = Path("/etc/containers")
NODE_CONTAINERS_LIB = Path("/var/lib/containers")
NODE_IMAGE_STORE = NODE_CONTAINERS_LIB / "faultline-images"
NODE_DOCKER_ETC = Path("/etc/docker")
NODE_DOCKER_LIB = Path("/var/lib/docker")
NODE_ROOTFS = NODE_DOCKER_ETC / "faultline-lab-rootfs.tar"
DOCKER_CGROUP_ROOT = "faultline-lab-docker"

_SUBDIR = "containers"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _httpd(tool: str) -> str:
    return f"trap 'exit 0' TERM; httpd -f -p {WEB_PORTS[tool]} -h /var/www & wait"


_WEB_ARGS = ("--name", CONTAINER, "--network", "host", "--stop-timeout", "2")
_CMD_CHANGE = 'CMD ["/bin/sh"]'
_PACKAGES = {"podman": "podman", "docker": "docker.io"}

# Mounts the cgroup hierarchies the node's fresh sysfs hides; a no-op when they are there.
_CGROUP_SCRIPT = r"""
case "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" in tmpfs|cgroup2fs) exit 0;; esac
if ! grep -qv '^0::' /proc/self/cgroup; then
    exec mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
fi
mount -t tmpfs -o nosuid,nodev,noexec,mode=0755 cgroup_root /sys/fs/cgroup
for c in $(cut -d: -f2 /proc/self/cgroup); do
    [ -n "$c" ] || continue
    d=${c#name=}
    mkdir -p "/sys/fs/cgroup/$d"
    mount -t cgroup -o "nosuid,nodev,noexec,$c" cgroup "/sys/fs/cgroup/$d"
    case "$d" in
        *,*) for s in $(echo "$d" | tr , ' '); do ln -s "$d" "/sys/fs/cgroup/$s"; done ;;
    esac
done
"""

_DOCKERD_SCRIPT = r"""
docker version >/dev/null 2>&1 && exit 0
setsid dockerd >>/run/dockerd.log 2>&1 </dev/null &
i=0
until docker version >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 1500 ] || { echo "dockerd not up, see /run/dockerd.log" >&2; exit 1; }
    sleep 0.02
done
"""


# --- checks and packages ---------------------------------------------------------------


def available(tool: str) -> bool:
    """True when this host can run `tool` containers inside lab nodes (binaries, root)."""
    if tool not in TOOLS or os.geteuid() != 0:
        return False
    if tool == "podman":
        conmon = shutil.which("conmon", path=_PATH) or Path("/usr/libexec/podman/conmon").exists()
        runtime = shutil.which("crun", path=_PATH) or shutil.which("runc", path=_PATH)
        return bool(shutil.which("podman", path=_PATH) and conmon and runtime)
    needed = ("docker", "dockerd", "containerd", "containerd-shim-runc-v2", "runc")
    return all(shutil.which(name, path=_PATH) for name in needed)


def static_busybox() -> bool:
    """True when /bin/busybox exists and is statically linked (no ELF interpreter)."""
    try:
        data = BUSYBOX.read_bytes()
    except OSError:
        return False
    if data[:5] != b"\x7fELF\x02":  # 64-bit ELF
        return False
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for index in range(phnum):
        start = phoff + index * phentsize
        if int.from_bytes(data[start : start + 4], order) == 3:  # PT_INTERP
            return False
    return True


def ensure_packages(tool: str = "podman") -> list[str]:
    """apt-get install busybox-static (and the engine's package) when missing.

    Returns the packages installed. `policy-rc.d` keeps docker.io from starting a daemon.
    """
    _check_tool(tool)
    todo = [] if static_busybox() else ["busybox-static"]
    if not available(tool):
        todo.append(_PACKAGES[tool])
    if not todo:
        return []
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": _PATH}
    apt = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"]
    install = [*apt, "install", "--no-install-recommends", *todo]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        _run([*apt, "update"], env=env, timeout=1800)  # stale package lists
        _run(install, env=env, timeout=1800)
    if not static_busybox() or not available(tool):
        raise LabError(f"installed {' '.join(todo)} but {tool} is still unusable")
    return todo


# --- image -----------------------------------------------------------------------------


def build_image(state_dir: Path, tool: str = "podman") -> str:
    """Make IMAGE available to the lab's nodes; returns its name. Idempotent and locked.

    podman: imports the busybox rootfs into the shared image store STATE/containers/images
    (the host's own podman storage, /run and /dev/shm are not touched). docker: only writes
    the rootfs tarball; each node's dockerd imports it at its first boot.
    """
    _check_tool(tool)
    with _locked(state_dir):
        rootfs = _ensure_rootfs(state_dir)
        if tool == "podman":
            env = _build_env(state_dir)
            exists = _host_podman(state_dir, "image", "exists", IMAGE)
            if subprocess.run(exists, env=env, capture_output=True, check=False).returncode:
                _run(
                    _host_podman(state_dir, "import", "--change", _CMD_CHANGE, str(rootfs), IMAGE),
                    env=env,
                )
    return IMAGE


def _host_podman(state_dir: Path, *args: str) -> list[str]:
    """podman on the host in a private mount namespace, so that what it writes outside its
    configured dirs (/var/lib/containers/cache/blob-info-cache-v1.boltdb, whatever lands in
    /run) goes to the state dir or a throwaway tmpfs, never to the host."""
    scratch = _base(state_dir) / "build" / "var-lib-containers"
    scratch.mkdir(parents=True, exist_ok=True)
    NODE_CONTAINERS_LIB.mkdir(mode=0o700, exist_ok=True)  # a mount target (nodes need it too)
    script = (
        'mount -t tmpfs -o mode=0755 tmpfs /run && mount --bind "$0" /var/lib/containers'
        ' && exec "$@"'
    )
    isolate = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
    return [*isolate, str(scratch), "podman", *args]


def _ensure_rootfs(state_dir: Path) -> Path:
    """A deterministic tarball: static busybox, all its applets, /var/www/index.html."""
    target = _base(state_dir) / "rootfs.tar"
    if target.exists():
        return target
    if not static_busybox():
        raise LabError(f"{BUSYBOX} is missing or not static: ensure_packages() first")
    applets = _run([str(BUSYBOX), "--list-full"]).stdout.split()
    tmp = target.with_name(".rootfs.tar.tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var"}
        dirs |= {"var/www", "proc", "sys", "dev", "run"}
        for name in sorted(dirs):
            tar.addfile(_entry(name, tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755))
        with BUSYBOX.open("rb") as binary:
            tar.addfile(_entry("bin/busybox", size=BUSYBOX.stat().st_size), binary)
        for applet in sorted(set(applets)):
            if applet != "bin/busybox" and os.path.dirname(applet) in dirs:
                tar.addfile(_entry(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
        files = {
            "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
            "etc/group": "root:x:0:\n",
            "var/www/index.html": "faultline lab web\n",
        }
        for name, text in files.items():
            data = text.encode()
            tar.addfile(_entry(name, mode=0o644, size=len(data)), io.BytesIO(data))
    tmp.replace(target)
    return target


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o755, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _build_env(state_dir: Path) -> dict[str, str]:
    """Environment for host-side podman that writes only under STATE/containers."""
    base = _base(state_dir)
    build = base / "build"
    for sub in ("run", "tmp", "copy"):
        (build / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    driver = _driver(base, "podman")
    _write(
        build / "storage.conf",
        f'[storage]\ndriver = "{driver}"\ngraphroot = "{base / "images"}"\n'
        f'runroot = "{build / "run"}"\n',
    )
    _write(build / "containers.conf", _containers_conf(build / "tmp"))
    return {
        "PATH": _PATH,
        "HOME": str(build),
        "TMPDIR": str(build / "copy"),
        "CONTAINERS_CONF": str(build / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(build / "storage.conf"),
    }


# --- nodes -----------------------------------------------------------------------------


def node_files(state_dir: Path, node_name: str, tool: str = "podman") -> dict[Path, Path]:
    """Create the node's engine config and storage; returns {host_source: path_inside_node}.

    Bind-mount them in this order at every boot (the last podman one is nested in the one
    before it). `node_name` must be unique on the host (it names docker's cgroups).
    """
    _check_tool(tool)
    base = _base(state_dir)
    node = base / "nodes" / node_name
    driver = _driver(base, tool)
    if tool == "podman":
        etc, lib = node / "etc-containers", node / "lib-containers"
        (lib / NODE_IMAGE_STORE.name).mkdir(parents=True, exist_ok=True)
        (base / "images").mkdir(exist_ok=True)  # filled by build_image()
        etc.mkdir(parents=True, exist_ok=True)
        _copy_host_config(Path("/etc/containers"), etc, skip={"storage.conf", "containers.conf"})
        if not (etc / "policy.json").exists():
            _write(etc / "policy.json", '{"default": [{"type": "insecureAcceptAnything"}]}\n')
        _write(
            etc / "storage.conf",
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{NODE_CONTAINERS_LIB}/storage"\n'
            'runroot = "/run/containers/storage"\n\n[storage.options]\n'
            f'additionalimagestores = ["{NODE_IMAGE_STORE}"]\n',
        )
        _write(etc / "containers.conf", _containers_conf(Path("/run/libpod")))
        NODE_CONTAINERS_LIB.mkdir(mode=0o700, exist_ok=True)
        return {
            etc: NODE_CONTAINERS_ETC,
            lib: NODE_CONTAINERS_LIB,
            base / "images": NODE_IMAGE_STORE,
        }
    etc, lib = node / "etc-docker", node / "lib-docker"
    lib.mkdir(parents=True, mode=0o710, exist_ok=True)
    etc.mkdir(parents=True, exist_ok=True)
    daemon = {
        "bridge": "none",
        "iptables": False,
        "ip-forward": False,
        "ip-masq": False,
        "userland-proxy": False,
        "storage-driver": driver,
        "exec-opts": ["native.cgroupdriver=cgroupfs"],
        "cgroup-parent": f"/{DOCKER_CGROUP_ROOT}/{node_name}",
        "log-driver": "json-file",
    }
    _write(etc / "daemon.json", json.dumps(daemon, indent=2) + "\n")
    with _locked(state_dir):
        rootfs = _ensure_rootfs(state_dir)
    copy = etc / NODE_ROOTFS.name
    if not copy.exists():
        try:
            os.link(rootfs, copy)
        except OSError:
            shutil.copyfile(rootfs, copy)
    NODE_DOCKER_LIB.mkdir(mode=0o710, exist_ok=True)
    return {etc: NODE_DOCKER_ETC, lib: NODE_DOCKER_LIB}


def node_boot_commands(tool: str = "podman") -> list[list[str]]:
    """argv lists the node runs, in order, at every boot to (re)start container `web`.

    Idempotent: on a running node they change nothing. podman: ~0.1 s (a first boot
    creates the container, later boots start the existing one). docker: dockerd start
    ~0.2-0.3 s, import 0.1 s on the first boot only, container start ~0.15 s.
    """
    _check_tool(tool)
    web = shlex.join([*_WEB_ARGS, IMAGE, "sh", "-c", _httpd(tool)])
    cgroups = ["sh", "-c", _CGROUP_SCRIPT]
    if tool == "podman":
        start = f"podman start {CONTAINER} >/dev/null 2>&1 || podman run -d --replace {web}"
        return [cgroups, ["sh", "-c", start]]
    image = (
        f"docker image inspect {IMAGE} >/dev/null 2>&1 || "
        f"docker import --change {shlex.quote(_CMD_CHANGE)} {NODE_ROOTFS} {IMAGE}"
    )
    start = (
        f"docker start {CONTAINER} >/dev/null 2>&1 || "
        f"{{ docker rm -f {CONTAINER} >/dev/null 2>&1; docker run -d {web}; }}"
    )
    return [cgroups, ["sh", "-c", _DOCKERD_SCRIPT], ["sh", "-c", image], ["sh", "-c", start]]


def remove_cgroups(node_name: str) -> int:
    """Remove the empty cgroups a powered-off node's dockerd left behind; returns how many.

    Cgroups that still hold processes are kept. podman nodes make none (a no-op).
    """
    removed = 0
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / DOCKER_CGROUP_ROOT
        for path in (top / node_name, top):
            if not path.is_dir():
                continue
            for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):  # busy or not empty (another node's)
                    os.rmdir(dirpath)
                    removed += 1
    return removed


# --- helpers ---------------------------------------------------------------------------


def _containers_conf(tmp_dir: Path) -> str:
    return (
        '[containers]\nnetns = "host"\ncgroups = "disabled"\n\n'
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'lock_type = "file"\ntmp_dir = "{tmp_dir}"\n'
    )


def _copy_host_config(source: Path, target: Path, skip: set[str]) -> None:
    """policy.json, registries.conf(.d) ...: the node sees the host's, minus our files."""
    if not source.is_dir():
        return
    for entry in source.iterdir():
        if entry.name in skip or (target / entry.name).exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, symlinks=True)
        elif entry.is_file():
            shutil.copy2(entry, target / entry.name)


def _cgroup_hierarchies() -> list[Path]:
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] in ("cgroup", "cgroup2"):
                found.append(Path(left.split()[4]))
    return found


def _driver(base: Path, tool: str) -> str:
    """overlay (fast, shares layers) unless the state dir itself is on overlayfs."""
    base.mkdir(parents=True, exist_ok=True)
    fstype = _run(["stat", "-f", "-c", "%T", str(base)]).stdout.strip()
    if fstype == "overlayfs" or "overlay" not in Path("/proc/filesystems").read_text():
        return "vfs"
    return "overlay" if tool == "podman" else "overlay2"


def _base(state_dir: Path) -> Path:
    return Path(state_dir) / _SUBDIR


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    base = _base(state_dir)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _check_tool(tool: str) -> None:
    if tool not in TOOLS:
        raise ValueError(f"unknown container tool {tool!r}: expected one of {', '.join(TOOLS)}")


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)


def _run(
    argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"{shlex.join(argv)} failed (rc {result.returncode}): {detail}")
    return result

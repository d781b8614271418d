"""Debian packages the lab needs, installed on demand."""

from __future__ import annotations

from faultline.lab.system import LabError, run

REQUIRED = (
    "sudo",
    "openssh-server",
    "openssh-client",
    "memcached",
    "redis-server",
    "tini",
    "iptables",
    "iproute2",
    "procps",
    "util-linux",
    "netcat-openbsd",
)

_APT = ("apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600")
_APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


def missing(packages: tuple[str, ...] = REQUIRED) -> list[str]:
    result = run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages], check=False
    )
    installed = {
        line.split()[0].split(":")[0]
        for line in result.stdout.splitlines()
        if len(line.split()) >= 2 and line.split()[1].startswith("ii")
    }
    return [p for p in packages if p not in installed]


def ensure(packages: tuple[str, ...] = REQUIRED) -> list[str]:
    """Install whatever is missing; returns what was installed."""
    todo = missing(packages)
    if not todo:
        return []
    install = [*_APT, "install", "--no-install-recommends", *todo]
    if run(install, check=False, timeout=1800, env=_APT_ENV).returncode != 0:
        # Usually stale or empty package lists on a fresh machine.
        run([*_APT, "update"], timeout=1800, env=_APT_ENV)
        run(install, timeout=1800, env=_APT_ENV)
    still = missing(packages)
    if still:
        raise LabError(f"could not install {', '.join(still)}")
    return todo

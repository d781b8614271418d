"""Validators for every name that reaches a command line on a node.

Commands are composed from these validated names and quoted with shlex on top; a value such
as ``x; rm -rf /`` is refused here with an error that names the field.
"""

from __future__ import annotations

import re

from faultline.models.errors import UnsafeNameError

_UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:\\-]{0,254}$")
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_LOGICAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


def _check(pattern: re.Pattern[str], value: str, field: str, allowed: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise UnsafeNameError(field, str(value), allowed)
    return value


def unit_name(value: str, field: str = "unit") -> str:
    """A systemd unit or init.d script name."""
    return _check(_UNIT, value, field, "letters, digits and @ . _ : -")


def container_name(value: str, field: str = "container") -> str:
    return _check(_CONTAINER, value, field, "letters, digits and _ . -")


def interface_name(value: str, field: str = "interface") -> str:
    """A Linux network interface name (at most 15 characters)."""
    return _check(_INTERFACE, value, field, "letters, digits and _ . - (at most 15)")


def logical_name(value: str, field: str = "name") -> str:
    """Names of services, containers and networks as users write them."""
    return _check(_LOGICAL, value, field, "letters, digits and _ . -")


def injection_id(value: str, field: str = "injection_id") -> str:
    """The tag written into iptables comments and process markers."""
    return _check(_ID, value, field, "lowercase letters, digits and - (at most 63)")


def grep_pattern(value: str, field: str = "grep") -> str:
    """A process pattern: free text, but one printable line; it is always quoted."""
    return _check(_PRINTABLE, value, field, "one line of printable ASCII")


def command_line(value: str, field: str = "command") -> str:
    """An operator-written command (process driver start/stop): one printable line.

    These come from the target's configuration, written by the cloud's operator, never from
    a fault request; they run as written, like os-faults' process driver commands.
    """
    return _check(_PRINTABLE, value, field, "one line of printable ASCII")

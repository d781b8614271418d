"""Lab add-on `redfish`: sushy-tools' Redfish emulator in front of the lab's libvirtd.

Needs the `libvirt` add-on: with `--with libvirt,redfish` it uses the running one; with
`--with redfish` alone it starts it (and then the target lists only the Redfish backend).
`up` pip-installs sushy-tools (the emulator) and sushy (the client the backend uses) when
missing, generates a CA and a server certificate for 127.0.0.1 (so clients verify TLS as
against a real BMC: the CA is in `addons/redfish/ca.pem`), a password in a 0600 file with
its bcrypt hash in the emulator's htpasswd file (HTTP basic auth), and runs the emulator
on 127.0.0.1 on a free port with its libvirt driver. A ComputerSystem per domain (Id = the
domain UUID, Name = the node's fqdn); Reset actions go through libvirt to the lab node
(ForceOff/GracefulShutdown/On/ForceRestart/GracefulRestart).

Returns `{"power": [{"driver": "redfish", "args": {"url", "usernameFile", "passwordFile",
"caFile"}}]}`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import importlib
import ipaddress
import json
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultline.lab import addon_libvirt
from faultline.lab.addon_libvirt import (
    ensure_python,
    free_port,
    record_process,
    recorded_processes,
    stop_process,
    tail,
)
from faultline.lab.addons import addon_dir
from faultline.lab.system import LabError, ProcessId

if TYPE_CHECKING:
    from faultline.lab.lab import Lab

NAME = "redfish"
SUSHY_TOOLS = "sushy-tools==2.2.0"
SUSHY = "sushy==5.14.0"
USERNAME = "faultline"
CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"
USERNAME_FILE = "username"
PASSWORD_FILE = "password"  # noqa: S105 - a file name; the file is 0600
HTPASSWD_FILE = "htpasswd"  # 0600: bcrypt hashes the emulator checks
CONFIG_FILE = "emulator.conf"
LOG_FILE = "emulator.log"
START_TIMEOUT = 60.0
#: bcrypt's minimum cost: the emulator checks the hash on every request.
BCRYPT_ROUNDS = 4


def state_root(lab: Lab) -> Path:
    return lab.state_dir / "addons" / NAME


# -- TLS ----------------------------------------------------------------------------------------


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it (30 days)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Faultline lab Redfish CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / CA_FILE).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        directory / KEY_FILE,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)


# -- the emulator ---------------------------------------------------------------------------------


def emulator_config(directory: Path, port: int, libvirt_uri: str) -> str:
    settings = {
        "SUSHY_EMULATOR_LISTEN_IP": "127.0.0.1",
        "SUSHY_EMULATOR_LISTEN_PORT": port,
        "SUSHY_EMULATOR_SSL_CERT": str(directory / CERT_FILE),
        "SUSHY_EMULATOR_SSL_KEY": str(directory / KEY_FILE),
        "SUSHY_EMULATOR_AUTH_FILE": str(directory / HTPASSWD_FILE),
        "SUSHY_EMULATOR_LIBVIRT_URI": libvirt_uri,
        "SUSHY_EMULATOR_IGNORE_BOOT_DEVICE": True,
    }
    lines = [f"{key} = {value!r}" for key, value in settings.items()]
    return "# Faultline lab: sushy-emulator settings, written by the redfish add-on.\n" + (
        "\n".join(lines) + "\n"
    )


def _get(url: str, context: ssl.SSLContext, auth: str | None = None) -> Any:
    request = urllib.request.Request(url)  # noqa: S310 - https to our own emulator
    if auth is not None:
        request.add_header("Authorization", f"Basic {auth}")
    with urllib.request.urlopen(request, context=context, timeout=5) as answer:  # noqa: S310
        return json.loads(answer.read())


def _wait_ready(url: str, directory: Path, proc: ProcessId, password: str, nodes: int) -> None:
    context = ssl.create_default_context(cafile=str(directory / CA_FILE))
    auth = base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            _get(f"{url}/redfish/v1/", context)
            systems = _get(f"{url}/redfish/v1/Systems", context, auth)
            if len(systems.get("Members", [])) >= nodes:
                return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if not proc.alive():
            raise LabError(f"sushy-emulator exited at start:\n{tail(directory / LOG_FILE)}")
        if time.monotonic() > deadline:
            raise LabError(
                f"sushy-emulator does not answer at {url} after {START_TIMEOUT:g} s:\n"
                f"{tail(directory / LOG_FILE)}"
            )
        time.sleep(0.1)


class RedfishAddon:
    def up(self, lab: Lab) -> dict[str, Any]:
        ensure_python("sushy_tools", SUSHY_TOOLS)
        ensure_python("sushy", SUSHY)
        self.down(lab)
        libvirt_uri = addon_libvirt.uri(lab)
        if libvirt_uri is None:  # `--with redfish` alone: the emulator needs a libvirtd
            addon_libvirt.ADDON.up(lab)
            libvirt_uri = addon_libvirt.uri(lab)
            if libvirt_uri is None:
                raise LabError("the libvirt add-on did not come up")
        directory = addon_dir(lab, NAME)
        make_certificates(directory)
        password = secrets.token_urlsafe(24)
        bcrypt: Any = importlib.import_module("bcrypt")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
        _write_private(directory / PASSWORD_FILE, password.encode())
        _write_private(directory / HTPASSWD_FILE, f"{USERNAME}:{hashed}\n".encode())
        (directory / USERNAME_FILE).write_text(USERNAME)
        port = free_port()
        (directory / CONFIG_FILE).write_text(emulator_config(directory, port, libvirt_uri))
        with open(directory / LOG_FILE, "ab") as out:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "sushy_tools.emulator.main",
                    "--config",
                    str(directory / CONFIG_FILE),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        proc = ProcessId.of(child.pid)
        if proc is None:
            raise LabError(f"sushy-emulator exited at start:\n{tail(directory / LOG_FILE)}")
        record_process(directory, "emulator", proc)
        url = f"https://127.0.0.1:{port}"
        _wait_ready(url, directory, proc, password, len(lab.nodes))
        return {
            "power": [
                {
                    "driver": "redfish",
                    "args": {
                        "url": url,
                        "usernameFile": str(directory / USERNAME_FILE),
                        "passwordFile": str(directory / PASSWORD_FILE),
                        "caFile": str(directory / CA_FILE),
                    },
                }
            ]
        }

    def down(self, lab: Lab) -> None:
        directory = state_root(lab)
        if not directory.is_dir():
            return
        proc = recorded_processes(directory).get("emulator")
        if proc is not None:
            stop_process(proc)
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)


ADDON = RedfishAddon()

"""How to reach a Ganeti cluster's RAPI, and which of its objects become Faultline nodes."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from faultline.models.base import Model
from faultline.models.secrets import SecretKeyRef


class GanetiConnection(Model):
    """The cluster's remote API (RAPI): JSON over HTTPS, HTTP basic auth.

    The password comes from a file (CLI) or a Secret (operator), never from the spec
    itself. TLS is verified: RAPI's certificate is self-signed, so pin it with `caFile` /
    `caSecret` (the certificate part of the cluster's `rapi.pem`); turning verification
    off must be written out (`insecure: true`).
    """

    url: str = Field(
        min_length=1, description="RAPI base URL, e.g. https://cluster.example.com:5080."
    )
    username: str | None = Field(default=None, description="A RAPI user (rapi/users).")
    password_file: str | None = Field(default=None, description="File holding the password.")
    password_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding the password (operator)."
    )
    ca_file: str | None = Field(
        default=None,
        description="The RAPI certificate (or its CA) to trust instead of the system's.",
    )
    ca_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding that certificate (operator)."
    )
    insecure: bool = Field(
        default=False, description="Skip TLS verification (must be written out)."
    )
    timeout: float = Field(
        default=300.0, gt=0, description="Seconds a Ganeti job may take before we give up."
    )
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL (e.g. https://cluster.example.com:5080)"
            )
        if parts.username or parts.password:
            raise ValueError("put no credentials in the URL; use username and passwordFile")
        if parts.path not in ("", "/"):
            raise ValueError("give the RAPI base URL without a path (the client adds /2/...)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> GanetiConnection:
        # Both a Secret and a file may be set: the operator writes the Secret to a file.
        has_password = bool(self.password_file or self.password_secret)
        if has_password and not self.username:
            raise ValueError("a password needs its `username` (a user of RAPI's users file)")
        if self.username and not has_password:
            raise ValueError(f"user {self.username!r} needs `passwordFile` or `passwordSecret`")
        if (self.ca_file or self.ca_secret) and self.insecure:
            raise ValueError("`caFile` and `insecure: true` contradict each other; drop one")
        return self


class GanetiDiscovery(Model):
    """Which of the cluster's objects become nodes (labels say which kind each is).

    Ganeti nodes get their primary IP; instances the IP of their first NIC (an instance
    without one is skipped, with a warning, unless `hosts` maps its name to an IP).
    """

    nodes: bool = Field(default=True, description="Add the Ganeti nodes (hypervisor hosts).")
    instances: bool = Field(default=True, description="Add the instances (VMs).")
    hosts: dict[str, str] = Field(
        default_factory=dict, description="Name -> IP, for instances whose NIC has none."
    )

    @model_validator(mode="after")
    def _something(self) -> GanetiDiscovery:
        if not self.nodes and not self.instances:
            raise ValueError("nodes and instances are both false: nothing would be discovered")
        return self

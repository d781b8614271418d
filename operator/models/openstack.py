"""How to reach a cloud's OpenStack APIs, and how Nova hosts become Faultline nodes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from faultline.models.base import Model
from faultline.models.secrets import SecretKeyRef


class OpenStackAuth(Model):
    """Credentials: an entry of a clouds.yaml (`cloud`), or the fields inline.

    Passwords come from a file or a Secret, never from the spec itself.
    """

    cloud: str | None = Field(default=None, description="Entry in clouds.yaml.")
    clouds_file: str | None = Field(
        default=None, description="clouds.yaml path; default: openstacksdk's search path."
    )
    clouds_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding clouds.yaml (operator)."
    )
    auth_url: str | None = None
    username: str | None = None
    password_file: str | None = None
    password_secret: SecretKeyRef | None = None
    project_name: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region_name: str | None = None
    interface: Literal["public", "internal", "admin"] = "public"
    ca_file: str | None = Field(default=None, description="CA bundle for the API endpoints.")
    ca_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding the CA bundle (operator)."
    )
    insecure: bool = Field(
        default=False, description="Skip TLS verification (must be written out)."
    )
    compute_microversion: str | None = Field(
        default=None,
        pattern=r"^2\.\d{1,3}$",
        description="Pin Nova's microversion (default: the newest both sides know).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> OpenStackAuth:
        inline = self.auth_url or self.username
        if self.cloud and inline:
            raise ValueError("give either `cloud` (clouds.yaml) or `authUrl`/`username`, not both")
        if not self.cloud and not inline:
            raise ValueError(
                "say how to log in: `cloud` (an entry of clouds.yaml) or `authUrl`, "
                "`username`, `passwordFile`/`passwordSecret` and `projectName`"
            )
        if inline and not (self.auth_url and self.username and self.project_name):
            raise ValueError("inline credentials need `authUrl`, `username` and `projectName`")
        if inline and not (self.password_file or self.password_secret):
            raise ValueError("inline credentials need `passwordFile` or `passwordSecret`")
        return self


class OpenStackDiscovery(Model):
    """Nodes from Nova: compute hosts (hypervisors) and the hosts of the other services.

    A Nova host maps to an SSH-reachable node by the hypervisor's `host_ip`, or through
    `hosts` (Nova host name -> IP) where host_ip is not the address SSH should use.
    """

    hosts: dict[str, str] = Field(
        default_factory=dict, description="Nova host -> IP to reach it over SSH."
    )
    controllers: bool = Field(
        default=True, description="Also add hosts running only non-compute Nova services."
    )

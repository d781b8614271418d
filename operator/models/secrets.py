"""References to Kubernetes Secrets, shared by every config section that takes credentials."""

from __future__ import annotations

from pydantic import Field

from faultline.models.base import Model


class SecretKeyRef(Model):
    """A key of a Kubernetes Secret in the target's namespace (operator only)."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)

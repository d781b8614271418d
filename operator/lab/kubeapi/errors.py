"""Kubernetes API errors rendered as canonical ``Status`` bodies.

The reasons and messages follow kube-apiserver's wording closely enough for clients
(kopf, the kubernetes client, kubectl) to classify them the way they do with a real
cluster: they mostly look at the HTTP code and ``reason``.
"""

from __future__ import annotations

from typing import Any

import attrs
import kmock


@attrs.frozen
class KubeError(kmock.KubernetesError):
    """An API error with a canonical ``kind: Status`` body (see :meth:`status_body`)."""

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message or "",
            "reason": self.reason or "",
            "code": self.status,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(plural: str, group: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": plural}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        status=404,
        reason="NotFound",
        message=f'{_qualified(plural, group)} "{name}" not found',
        details=_details(plural, group, name),
    )


def resource_not_found() -> KubeError:
    return KubeError(
        status=404, reason="NotFound", message="the server could not find the requested resource"
    )


def already_exists(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        status=409,
        reason="AlreadyExists",
        message=f'{_qualified(plural, group)} "{name}" already exists',
        details=_details(plural, group, name),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> KubeError:
    why = why or (
        "the object has been modified; "
        "please apply your changes to the latest version and try again"
    )
    return KubeError(
        status=409,
        reason="Conflict",
        message=f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        details=_details(plural, group, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> KubeError:
    """422 Invalid; ``causes`` are (field, message) pairs."""
    text = ", ".join(f"{field}: {message}" if field else message for field, message in causes)
    details = _details(kind, group, name)
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": message, "field": field}
        for field, message in causes
    ]
    return KubeError(
        status=422,
        reason="Invalid",
        message=f'{kind}.{group} "{name}" is invalid: {text}'
        if group
        else f'{kind} "{name}" is invalid: {text}',
        details=details,
    )


def unprocessable(message: str) -> KubeError:
    """422 for patches that cannot be applied (e.g. a failed JSON-patch ``test``)."""
    return KubeError(status=422, reason="Invalid", message=message)


def bad_request(message: str) -> KubeError:
    return KubeError(status=400, reason="BadRequest", message=message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> KubeError:
    return KubeError(status=405, reason="MethodNotAllowed", message=message)


def unsupported_media_type(content_type: str) -> KubeError:
    return KubeError(
        status=415,
        reason="UnsupportedMediaType",
        message=f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json, application/apply-patch+yaml "
        f"(got {content_type!r})",
    )


def gone(message: str) -> KubeError:
    return KubeError(status=410, reason="Expired", message=message)


def forbidden(message: str) -> KubeError:
    return KubeError(status=403, reason="Forbidden", message=message)


def unauthorized() -> KubeError:
    return KubeError(status=401, reason="Unauthorized", message="Unauthorized")

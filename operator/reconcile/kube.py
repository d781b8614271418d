"""A small Kubernetes client for what kopf's handler patches cannot do.

kopf applies a handler's patch when the handler returns; the reconcile contract needs the
intent in status *before* a node is touched, so status is patched here, at once. It uses
the credentials kopf logged in with (see `login`).
"""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import aiohttp
import kopf

from faultline.models.resources import GROUP, VERSION


class KubeError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        self.status = status
        self.reason = reason  # AlreadyExists, Conflict, NotFound, ... (when the API says)
        super().__init__(f"Kubernetes API {status}: {message}")


class Kube:
    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"Bearer {info.token}"
        ssl_context: ssl.SSLContext | bool = True
        if info.insecure:
            ssl_context = False
        elif info.ca_path or info.ca_data:
            ctx = ssl.create_default_context(cafile=str(info.ca_path) if info.ca_path else None)
            if info.ca_data:
                data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
                ctx.load_verify_locations(cadata=data)
            if info.certificate_path and info.private_key_path:
                ctx.load_cert_chain(str(info.certificate_path), str(info.private_key_path))
            ssl_context = ctx
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        self._session = aiohttp.ClientSession(
            headers=headers,
            auth=auth,
            connector=aiohttp.TCPConnector(ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self._session.close()

    def _custom(self, namespace: str, plural: str, name: str = "", sub: str = "") -> str:
        url = f"{self.server}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        if name:
            url += f"/{name}"
        if sub:
            url += f"/{sub}"
        return url

    async def _request(
        self,
        method: str,
        url: str,
        body: Any = None,
        ctype: str = "",
        params: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Content-Type": ctype} if ctype else {}
        data = json.dumps(body) if body is not None else None
        async with self._session.request(
            method, url, data=data, headers=headers, params=params
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    answer = json.loads(text)
                    message, reason = answer.get("message", text), answer.get("reason", "")
                except (ValueError, AttributeError):
                    message, reason = text, ""
                raise KubeError(resp.status, str(message)[:300], str(reason))
            return json.loads(text) if text else None

    async def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", self._custom(namespace, plural, name))
        return result

    async def patch_status(
        self,
        namespace: str,
        plural: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """A merge patch of status. With `resource_version`, only if the object is still at
        that version (else KubeError 409 Conflict): optimistic concurrency."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        result: dict[str, Any] = await self._request(
            "PATCH",
            self._custom(namespace, plural, name, "status"),
            body,
            "application/merge-patch+json",
        )
        return result

    async def create(self, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a custom object (KubeError 409 AlreadyExists when the name is taken)."""
        result: dict[str, Any] = await self._request(
            "POST", self._custom(namespace, plural), body, "application/json"
        )
        return result

    async def list(
        self, namespace: str, plural: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Custom objects of a namespace (a consistent read), optionally by label selector."""
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self._request("GET", self._custom(namespace, plural), params=params)
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    async def delete(
        self, namespace: str, plural: str, name: str, propagation: str = "Background"
    ) -> bool:
        """Ask for deletion (finalizers still run). False when it was already gone."""
        try:
            await self._request(
                "DELETE",
                self._custom(namespace, plural, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
                "application/json",
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, bytes], str]:
        """A Secret's decoded data and its resourceVersion (for caching)."""
        url = f"{self.server}/api/v1/namespaces/{namespace}/secrets/{name}"
        body = await self._request("GET", url)
        data = {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
        for k, v in (body.get("stringData") or {}).items():
            data.setdefault(k, v.encode())
        return data, str(body.get("metadata", {}).get("resourceVersion", ""))

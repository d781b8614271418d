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
    def __init__(self, status: int, message: str) -> None:
        self.status = status
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

    async def _request(self, method: str, url: str, body: Any = None, ctype: str = "") -> Any:
        headers = {"Content-Type": ctype} if ctype else {}
        data = json.dumps(body) if body is not None else None
        async with self._session.request(method, url, data=data, headers=headers) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise KubeError(resp.status, message[:300])
            return json.loads(text) if text else None

    async def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", self._custom(namespace, plural, name))
        return result

    async def patch_status(
        self, namespace: str, plural: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "PATCH",
            self._custom(namespace, plural, name, "status"),
            {"status": status},
            "application/merge-patch+json",
        )
        return result

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, bytes], str]:
        """A Secret's decoded data and its resourceVersion (for caching)."""
        url = f"{self.server}/api/v1/namespaces/{namespace}/secrets/{name}"
        body = await self._request("GET", url)
        data = {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
        for k, v in (body.get("stringData") or {}).items():
            data.setdefault(k, v.encode())
        return data, str(body.get("metadata", {}).get("resourceVersion", ""))

"""Engines for FaultTargets: spec + Secrets -> private files -> one cached Engine each.

An engine (and its open SSH connections) is reused until the target's spec or one of its
Secrets changes (or rediscovery finds other nodes). A replaced engine is closed at the
first call RETIRED_GRACE_SECONDS later (every step and every rediscovery calls): a step that
took it before the change may still be using it. Secret contents go to files in a private
directory (0700 / 0600); they never reach status, Events or logs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from faultline.engine.discovery import discovered_config
from faultline.engine.engine import Engine
from faultline.models.errors import ConfigError, FaultlineError, config_error_from_pydantic
from faultline.models.resources import FaultTargetSpec
from faultline.models.secrets import SecretKeyRef
from faultline.reconcile.kube import Kube, KubeError

PLURAL = "faulttargets"
#: Longer than any one step (a power-off waits minutes at most); steps take a fresh engine.
RETIRED_GRACE_SECONDS = 900.0

log = logging.getLogger(__name__)


class TargetNotReadyError(FaultlineError):
    """The target or one of its Secrets is missing or invalid; retried later."""


def parse_target_spec(spec: dict[str, Any]) -> FaultTargetSpec:
    try:
        return FaultTargetSpec.model_validate(spec)
    except ValidationError as exc:
        raise config_error_from_pydantic(exc.errors(), prefix="spec") from None


class Targets:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._root = Path(tempfile.mkdtemp(prefix="faultline-secrets-"))
        self._root.chmod(0o700)
        self._engines: dict[tuple[str, str], tuple[str, Engine]] = {}
        self._retired: list[tuple[float, Engine]] = []
        self._written: dict[Path, str] = {}

    async def engine(self, namespace: str, name: str) -> tuple[Engine, FaultTargetSpec]:
        try:
            body = await self.kube.get(namespace, PLURAL, name)
        except KubeError as exc:
            if exc.status == 404:
                raise TargetNotReadyError(f"FaultTarget {namespace}/{name} not found") from None
            raise
        return await self.engine_for_body(namespace, name, body.get("spec") or {})

    async def engine_for_body(
        self, namespace: str, name: str, raw_spec: dict[str, Any], rediscover: bool = False
    ) -> tuple[Engine, FaultTargetSpec]:
        """The target's engine, rebuilt when the spec or a Secret changed; `rediscover` also
        rebuilds it when nodes come from a cloud API (Nova, Ganeti), to see new nodes."""
        await self._close_retired()
        spec = parse_target_spec(raw_spec)
        files, versions = await self._secret_files(namespace, name, spec)
        key = hashlib.sha256(
            (repr(sorted(raw_spec.items(), key=str)) + repr(versions)).encode()
        ).hexdigest()
        cached = self._engines.get((namespace, name))
        dynamic = any(
            getattr(spec.discovery, source, None) is not None for source in ("openstack", "ganeti")
        )
        if cached is not None and cached[0] == key and not (rediscover and dynamic):
            return cached[1], spec
        config = spec.model_copy(deep=True)
        for field, path in files.items():
            if field.startswith("openstack:"):
                assert config.openstack is not None
                setattr(config.openstack, field.removeprefix("openstack:"), str(path))
            elif field.startswith("ganeti:"):
                assert config.ganeti is not None
                setattr(config.ganeti, field.removeprefix("ganeti:"), str(path))
            elif field.startswith("power"):
                index, arg = field.removeprefix("power").split(":", 1)
                config.power[int(index)].args[arg] = str(path)
            elif field.startswith("bmc:"):
                node = next(n for n in config.nodes if n.fqdn == field[4:])
                assert node.bmc is not None
                node.bmc.password_file = str(path)
            else:
                setattr(config.ssh, field, str(path))
        found = await discovered_config(config)
        if cached is not None and cached[0] == key and found.nodes == cached[1].config.nodes:
            return cached[1], spec  # rediscovered, nothing changed: keep its connections
        engine = Engine(found)
        if cached is not None:
            self._retired.append((time.monotonic(), cached[1]))
        self._engines[(namespace, name)] = (key, engine)
        return engine, spec

    async def _close_retired(self, older_than: float | None = None) -> None:
        if older_than is None:
            older_than = RETIRED_GRACE_SECONDS
        now = time.monotonic()
        due = [e for at, e in self._retired if now - at >= older_than]
        self._retired = [(at, e) for at, e in self._retired if now - at < older_than]
        for engine in due:
            try:
                await engine.close()
            except Exception as exc:  # closing sockets must not fail a reconcile
                log.warning("closing a replaced engine: %s", exc)

    @property
    def retired(self) -> int:
        """Replaced engines not closed yet."""
        return len(self._retired)

    async def _secret_files(
        self, namespace: str, name: str, spec: FaultTargetSpec
    ) -> tuple[dict[str, Path], list[str]]:
        files: dict[str, Path] = {}
        versions: list[str] = []
        directory = self._root / f"{namespace}.{name}"
        directory.mkdir(mode=0o700, exist_ok=True)
        refs: dict[str, tuple[SecretKeyRef, str]] = {
            field: (ref, f"spec.ssh.{_camel(field)}")
            for field, ref in spec.ssh.secret_refs().items()
        }
        for section_name, section in (("openstack", spec.openstack), ("ganeti", spec.ganeti)):
            for attr in ("clouds_secret", "password_secret", "ca_secret"):
                ref = getattr(section, attr, None)
                if ref is not None:
                    field = attr.replace("_secret", "_file")
                    refs[f"{section_name}:{field}"] = (ref, f"spec.{section_name}.{_camel(field)}")
        for i, power in enumerate(spec.power):
            for key in ("cloudsSecret", "passwordSecret", "caSecret"):
                raw = power.args.get(key)
                if isinstance(raw, dict) and raw.get("name") and raw.get("key"):
                    where = f"spec.power[{i}].args.{key}"
                    refs[f"power{i}:{key.removesuffix('Secret')}File"] = (
                        SecretKeyRef(name=raw["name"], key=raw["key"]),
                        where,
                    )
        for i, node in enumerate(spec.nodes):
            if node.bmc is not None and node.bmc.password_secret is not None:
                where = f"spec.discovery.static.nodes[{i}].bmc.passwordSecret"
                refs[f"bmc:{node.fqdn}"] = (node.bmc.password_secret, where)
        for field, (ref, where) in refs.items():
            try:
                data, version = await self.kube.read_secret(namespace, ref.name)
            except KubeError as exc:
                if exc.status == 404:
                    raise TargetNotReadyError(
                        f"Secret {namespace}/{ref.name} ({where} of FaultTarget {name}) not found"
                    ) from None
                raise
            if ref.key not in data:
                raise ConfigError(
                    f"{where}.key",
                    f"Secret {ref.name} has no key {ref.key!r}",
                    f"keys: {', '.join(sorted(data)) or 'none'}",
                )
            path = directory / field.replace(":", "-")
            stamp = f"{ref.name}@{version}/{ref.key}"
            if self._written.get(path) != stamp or not path.exists():
                # Rewritten only when the Secret changed: an SSH connect may be reading it.
                path.touch(mode=0o600)
                path.write_bytes(data[ref.key])
                self._written[path] = stamp
            files[field] = path
            versions.append(f"{ref.name}@{version}")
        return files, versions

    def paused(self, namespace: str, name: str) -> bool:
        """The kill switch as last seen (no API call: target handlers keep it current)."""
        cached = self._engines.get((namespace, name))
        return cached is not None and cached[1].config.safety.paused

    async def close(self) -> None:
        await self._close_retired(older_than=0.0)
        for _, engine in self._engines.values():
            await engine.close()
        shutil.rmtree(self._root, ignore_errors=True)


def _camel(field: str) -> str:
    """private_key_file -> privateKeySecret (the spec field that names the Secret)."""
    base = field.removesuffix("_file")
    head, *rest = base.split("_")
    return head + "".join(p.title() for p in rest) + "Secret"

"""Stop conditions: while a fault is active, probe what must stay healthy; abort when not.

An HTTP probe fails on a refused connection, a timeout or a status outside its success
codes; a Prometheus condition fails when its query returns a sample that is not 0. A
condition fires after `failureThreshold` consecutive failures, `intervalSeconds` apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiohttp

from faultline.models.resources import HttpProbe, PrometheusQuery, StopCondition


async def http_failure(probe: HttpProbe) -> str | None:
    """None when healthy, else why not."""
    timeout = aiohttp.ClientTimeout(total=probe.timeout_seconds)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(probe.url, ssl=not probe.insecure_skip_tls_verify) as resp,
        ):
            if resp.status in probe.success_codes:
                return None
            return f"GET {probe.url} answered {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"GET {probe.url} failed: {exc or type(exc).__name__}"


async def prometheus_failure(check: PrometheusQuery) -> str | None:
    timeout = aiohttp.ClientTimeout(total=check.timeout_seconds)
    url = check.url.rstrip("/") + "/api/v1/query"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params={"query": check.query}) as resp,
        ):
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"Prometheus {check.url} query failed: {exc or type(exc).__name__}"
    if body.get("status") != "success":
        return f"Prometheus query error: {body.get('error', body)}"
    data = body.get("data", {})
    results = data.get("result", [])
    if data.get("resultType") == "scalar":
        results = [{"value": results}]
    firing = [r for r in results if str((r.get("value") or [0, "0"])[1]) not in ("0", "0.0")]
    if firing:
        return f"`{check.query}` returned {len(firing)} non-zero sample(s)"
    return None


@dataclass
class StopWatch:
    """Paces the checks and counts consecutive failures (pacing only: not durable state)."""

    conditions: list[StopCondition]
    _next: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)

    async def fired(self) -> str | None:
        """A message naming the condition that fired, or None."""
        now = time.monotonic()
        for cond in self.conditions:
            if self._next.get(cond.name, 0.0) > now:
                continue
            self._next[cond.name] = now + cond.interval_seconds
            if cond.http_get is not None:
                failure = await http_failure(cond.http_get)
            else:
                assert cond.prometheus is not None
                failure = await prometheus_failure(cond.prometheus)
            if failure is None:
                self._failures[cond.name] = 0
                continue
            count = self._failures.get(cond.name, 0) + 1
            self._failures[cond.name] = count
            if count >= cond.failure_threshold:
                return f"stop condition {cond.name!r} fired after {count} failure(s): {failure}"
        return None

    def next_due(self) -> float | None:
        """Seconds until the next check is due (None without conditions)."""
        if not self.conditions:
            return None
        now = time.monotonic()
        return max(0.0, min(self._next.get(c.name, now) for c in self.conditions) - now)

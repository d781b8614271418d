"""One active fault per (node, target): a lock table the injections share.

The table lives in the operator (one active replica, by kopf peering). At start-up kopf's
index of every FaultInjection's status is complete before any daemon runs, so locks held by
injections that were active before a restart are seen through `seed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

LockKey = tuple[str, str, str]  # namespace, target, node


class LockTable:
    def __init__(self) -> None:
        self._held: dict[LockKey, str] = {}

    def conflicts(
        self, keys: Iterable[LockKey], holder: str, seed: Mapping[LockKey, Iterable[str]]
    ) -> dict[str, str]:
        """{node: other holder} for every key held by someone else."""
        found: dict[str, str] = {}
        for key in keys:
            owner = self._held.get(key)
            if owner is None:
                owner = next((h for h in seed.get(key, ()) if h != holder), None)
            if owner is not None and owner != holder:
                found[key[2]] = owner
        return found

    def acquire(self, keys: Iterable[LockKey], holder: str) -> None:
        for key in keys:
            self._held[key] = holder

    def release(self, holder: str) -> None:
        for key in [k for k, h in self._held.items() if h == holder]:
            del self._held[key]

    def release_all_of(self, holders: Iterable[str]) -> None:
        for holder in holders:
            self.release(holder)

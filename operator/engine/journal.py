"""A file of records for callers without Kubernetes (CLI, library): crash-safe intent.

Append-only JSON lines; the last line for a record id wins. Written with fsync before the
engine acts, so `faultline recover` can undo what a killed process left applied.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from faultline.models.records import Record


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    async def save(self, record: Record) -> None:
        line = record.model_dump_json(by_alias=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def load(self) -> list[Record]:
        if not self.path.exists():
            return []
        latest: dict[str, Record] = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                record = Record.model_validate(json.loads(line))
                latest[record.id] = record
        return list(latest.values())

    def pending(self) -> list[Record]:
        """Records whose fault may still be on a node."""
        return [r for r in self.load() if r.needs_recovery]

    def compact(self) -> None:
        """Drop finished records once nothing is pending."""
        with self._lock:
            if self.path.exists() and not self.pending():
                self.path.unlink()

"""The CLI's record journal: last write per record wins, pending ones survive a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faultline.engine.journal import Journal
from faultline.models.records import Record, RecordPhase


def record(rid: str, phase: RecordPhase) -> Record:
    r = Record(
        id=rid,
        injection_id="fl-x",
        node="n1",
        address="10.0.0.1",
        kind="service",
        action="kill",
        target="memcached",
    )
    r.transition(phase)
    return r


def test_last_line_wins_and_pending_survives(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    asyncio.run(journal.save(record("a", RecordPhase.INJECTING)))
    asyncio.run(journal.save(record("b", RecordPhase.INJECTING)))
    asyncio.run(journal.save(record("b", RecordPhase.RECOVERED)))
    reopened = Journal(tmp_path / "j.jsonl")
    assert {r.id: r.phase for r in reopened.load()} == {
        "a": RecordPhase.INJECTING,
        "b": RecordPhase.RECOVERED,
    }
    assert [r.id for r in reopened.pending()] == ["a"]
    reopened.compact()
    assert reopened.path.exists()  # "a" still pending: nothing is dropped
    asyncio.run(reopened.save(record("a", RecordPhase.RECOVERED)))
    reopened.compact()
    assert not reopened.path.exists()


def test_record_events_are_capped() -> None:
    r = record("a", RecordPhase.INJECTING)
    for _ in range(30):
        r.transition(RecordPhase.RECOVERING)
    assert len(r.events) == 10

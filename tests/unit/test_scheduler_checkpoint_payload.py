"""The scheduler's snapshot holds what planning needs, not what users write freely: pending sessions
with 64 KiB random startup commands and the largest mounts make a checkpoint of a few kilobytes (each
one's command was in it: 20 of them made it larger than a NATS message, and no checkpoint was written
while they waited)."""

from __future__ import annotations

import zlib

from services.scheduler.checkpoint import decode_checkpoint, encode_checkpoint
from services.scheduler.snapshot import Snapshot
from tests.support.heavy_sessions import request_heavy
from tests.support.scheduler_history import History

SESSIONS = 20


def _snapshot() -> tuple[Snapshot, list[str]]:
    history = History()
    history.tenancy()
    history.agent("a1", cpu=1)  # too small for two: most stay pending
    commands = [request_heavy(history, f"s{n}") for n in range(SESSIONS)]
    history.pending_reason("s1", "no-agent")
    snapshot = Snapshot()
    for event in history.events:
        snapshot.apply(event)
    return snapshot, commands


def test_the_free_form_fields_of_pending_sessions_stay_out_of_the_checkpoint() -> None:
    snapshot, commands = _snapshot()
    data = encode_checkpoint(snapshot.export(), 7, None)
    assert len(data) < 16 * 1024, f"{len(data)} bytes for {SESSIONS} pending sessions"
    raw = zlib.decompress(data)
    assert not any(command[:64].encode() in raw for command in commands)
    assert b"/home/work/" not in raw


def test_a_snapshot_restored_without_them_plans_as_the_original() -> None:
    snapshot, _ = _snapshot()
    restored = Snapshot.restore(decode_checkpoint(encode_checkpoint(snapshot.export(), 7, None)).state)
    assert restored.export() == snapshot.export()
    assert restored.pending() == snapshot.pending() and len(restored.pending()) == SESSIONS
    assert restored.view({}) == snapshot.view({})
    assert restored.reason("s1") == snapshot.reason("s1") is not None

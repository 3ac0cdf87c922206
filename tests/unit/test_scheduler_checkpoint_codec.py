"""The scheduler's checkpoint codec: a snapshot encoded and restored is the same snapshot, and
bytes that are not a checkpoint of this version are refused with a clear error."""

from __future__ import annotations

import datetime as dt
import zlib

import msgspec
import pytest

from services.scheduler.checkpoint import Checkpoint, CheckpointError, decode_checkpoint, encode_checkpoint
from services.scheduler.snapshot import Snapshot
from tests.support.scheduler_history import History

CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _snapshot(history: History | None = None) -> Snapshot:
    history = history or History()
    history.tenancy()
    history.agent("a1")
    for n in range(6):
        history.request(f"s{n}", dependencies=("s0",) if n == 5 else ())
    history.pending_reason("s4", "no-agent")
    history.place(["s0", "s1", "s2"], "a1")
    history.terminate("s0", "a1")
    history.cancel("s3")
    snapshot = Snapshot()
    for event in history.events:
        snapshot.apply(event)
    return snapshot


def test_a_restored_snapshot_holds_and_plans_what_the_original_did() -> None:
    snapshot = _snapshot()
    checkpoint = decode_checkpoint(encode_checkpoint(snapshot.export(), 42, CREATED))
    restored = Snapshot.restore(checkpoint.state)
    assert (checkpoint.stream_seq, checkpoint.stream_created) == (42, CREATED)
    assert restored.export() == snapshot.export()
    assert restored.view({}) == snapshot.view({})
    assert restored.pending() == snapshot.pending()
    assert restored.reason("s4") == snapshot.reason("s4") is not None
    assert restored.quota("quota_keypair_alice") == snapshot.quota("quota_keypair_alice")


def test_the_snapshot_holds_only_live_sessions() -> None:
    state = _snapshot().export()
    assert {p.request.session_id for p in state.pending} == {"s4", "s5"}
    assert {"s0", "s1", "s2", "s3"}.isdisjoint(state.versions)  # placed, finished or cancelled: forgotten
    assert {q.name: sorted(q.holding) for q in state.quotas} == {"alice": ["s1", "s2"], "default": ["s1", "s2"]}
    assert state.finished == {"s0": True}  # what pending sessions depend on, only
    assert _snapshot().view({}).finished == {"s0": True}


def test_a_restored_snapshot_goes_on_from_where_the_original_was() -> None:
    history = History()
    snapshot = _snapshot(history)
    restored = Snapshot.restore(decode_checkpoint(encode_checkpoint(snapshot.export(), 1, None)).state)
    later = History()
    later._versions = history._versions  # noqa: SLF001 - the same platform, later
    later.terminate("s1", "a1")
    later.cancel("s4")
    for target in (snapshot, restored):
        for event in later.events:
            target.apply(event)
    assert restored.export() == snapshot.export()
    assert [p.session_id for p in restored.pending()] == ["s5"]
    agent = restored.agent("a1")
    assert agent is not None and sorted(a.session_id for a in agent.allocations.values()) == ["s2"]


@pytest.mark.parametrize("data", [
    b"",
    b"not compressed",
    zlib.compress(b"not msgpack \xff"),
    zlib.compress(msgspec.msgpack.encode({"schema": "another", "stream_seq": 1})),
    zlib.compress(msgspec.msgpack.encode({"schema": Checkpoint.__struct_fields__})),
])
def test_what_is_not_a_checkpoint_of_this_version_is_refused(data: bytes) -> None:
    with pytest.raises(CheckpointError):
        decode_checkpoint(data)

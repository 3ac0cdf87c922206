"""The scheduler's checkpoint on real NATS: a start from it and the tail of EVENTS gives exactly
the state of a full replay, reads only the tail, and a checkpoint it cannot trust is ignored; pending
sessions' large free-form fields stay out of it, one larger than a message goes in chunks, and one
that cannot be written is logged once with its size."""

from __future__ import annotations

import asyncio
import logging
import zlib

import msgspec
import pytest
from nats.js import JetStreamContext

from contracts.status import Reason
from contracts.subjects import EVENTS_STREAM
from services.common.flow import Following, follow
from services.scheduler.checkpoint import (
    KEY, SCHEMA, Checkpointer, checkpoint_bucket, decode_checkpoint, encode_checkpoint, load_checkpoint,
)
from services.scheduler.checkpoint_chunks import chunk_key, read_head, write_chunked
from services.scheduler.flow import SNAPSHOT, SnapshotFeed
from services.scheduler.main import PAYLOAD_ALLOWANCE
from services.scheduler.snapshot import Snapshot
from tests.support.heavy_sessions import request_heavy
from tests.support.scheduler_history import History, publish_history
from tests.support.waiting import async_wait_for

CHUNK_BYTES = 512 * 1024


class _Runner:
    def notify(self) -> None:
        pass


async def _follow(js: JetStreamContext, snapshot: Snapshot, start_seq: int | None = None) -> Following:
    caught_up = asyncio.Event()
    following = await follow(js, SNAPSHOT, SnapshotFeed(snapshot, _Runner()), caught_up,  # type: ignore[arg-type]
                             start_seq=start_seq)
    await asyncio.wait_for(caught_up.wait(), 300)
    return following


async def _replayed(js: JetStreamContext) -> tuple[Snapshot, Following]:
    snapshot = Snapshot()
    following = await _follow(js, snapshot)
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    await async_wait_for(lambda: following.position == last, timeout=300, message="the replay did not reach the end")
    return snapshot, following


async def _checkpoint(js: JetStreamContext, snapshot: Snapshot, following: Following) -> Checkpointer:
    stream = await js.stream_info(EVENTS_STREAM)
    checkpointer = Checkpointer(await checkpoint_bucket(js), snapshot, lambda: following.position,
                                (0, stream.created), CHUNK_BYTES)
    assert await checkpointer.write()
    return checkpointer


async def _restored(js: JetStreamContext) -> tuple[Snapshot, Following]:
    checkpoint = await load_checkpoint(await checkpoint_bucket(js), await js.stream_info(EVENTS_STREAM))
    assert checkpoint is not None
    snapshot = Snapshot.restore(checkpoint.state)
    following = await _follow(js, snapshot, checkpoint.stream_seq + 1)
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    await async_wait_for(lambda: following.position == last, timeout=300, message="the tail did not reach the end")
    return snapshot, following


def _first_half(history: History) -> None:
    history.tenancy()
    for agent in ("a1", "a2", "a3"):
        history.agent(agent)
    for n in range(40):
        history.request(f"s{n}")
    history.place([f"s{n}" for n in range(0, 20)], "a1")
    history.place([f"s{n}" for n in range(20, 30)], "a2")
    for n in range(0, 10):
        history.terminate(f"s{n}", "a1")
    history.terminate("s20", "a2", Reason.TASK_FAILED)
    history.cancel("s30")
    history.pending_reason("s31", "no-agent")
    history.request("d1", dependencies=("s0", "s20", "s25"))
    history.lose("a3")


def _second_half(history: History) -> None:
    history.recover("a3")
    history.lose("a2")
    for n in range(10, 15):
        history.terminate(f"s{n}", "a1")
    history.terminate("s25", "a2", Reason.AGENT_LOST)
    history.place(["s32", "s33"], "a3")
    history.terminate("s32", "a3")
    history.cancel("s34")
    history.pending_reason("s35", "quota-exceeded")
    for n in range(40, 50):
        history.request(f"s{n}")
    history.request("d2", dependencies=("s10", "s32"))


async def test_a_checkpoint_and_the_tail_give_the_state_of_a_full_replay(js: JetStreamContext) -> None:
    first, second = History(), History()
    _first_half(first)
    second._versions = first._versions  # noqa: SLF001 - one history, published in two parts
    _second_half(second)
    await publish_history(js, first.events)
    live, following = await _replayed(js)
    await _checkpoint(js, live, following)
    await following.stop()
    last = await publish_history(js, second.events)

    restored, tail = await _restored(js)
    replayed, whole = await _replayed(js)
    await tail.stop()
    await whole.stop()

    assert tail.delivered == len(second.events)
    assert whole.delivered == last
    assert restored.export() == replayed.export()
    state = replayed.export()
    pending = [p.request.session_id for p in state.pending]
    assert pending == [*(f"s{n}" for n in range(31, 40) if n not in (32, 33, 34)), "d1",
                       *(f"s{n}" for n in range(40, 50)), "d2"]
    assert set(state.versions) & {f"s{n}" for n in range(0, 35)} == {"s31"}  # of the sessions: the pending ones
    holders = {q.name: set(q.holding) for q in state.quotas}
    running = {f"s{n}" for n in (*range(15, 20), *range(21, 25), *range(26, 30), 33)}
    assert holders == {"alice": running, "default": running}
    allocations = {a.id: {al.session_id for al in a.allocations.values()} for a in state.agents}
    assert allocations == {"a1": {f"s{n}" for n in range(15, 20)}, "a2": running & {f"s{n}" for n in range(20, 30)},
                           "a3": {"s33"}}
    # outcomes only of what pending sessions wait on: d1's s25 finished while it waited; s0 and s20
    # (before d1's request), s10 and s32 (before d2's) are left to the store (``PassRunner``)
    assert replayed.view({}).finished == {"s25": False}
    assert replayed.unresolved_dependencies() == {"s0", "s20", "s10", "s32"}
    assert restored.unresolved_dependencies() == {"s0", "s20", "s10", "s32"}


@pytest.mark.slow
async def test_a_restart_after_10000_sessions_reads_only_the_tail(js: JetStreamContext) -> None:
    history = History()
    history.tenancy()
    agents = [f"a{n}" for n in range(10)]
    for agent in agents:
        history.agent(agent, cpu=1000)
    for batch in range(100):
        ids = [f"b{batch}x{n}" for n in range(100)]
        for session_id in ids:
            history.request(session_id)
        for n, agent in enumerate(agents):
            history.place(ids[n * 10:(n + 1) * 10], agent)
        for n, session_id in enumerate(ids[:-1]):  # one session of each batch keeps running
            history.terminate(session_id, agents[n // 10])
    await publish_history(js, history.events)
    live, following = await _replayed(js)
    assert following.delivered == len(history.events)
    await _checkpoint(js, live, following)
    await following.stop()

    tail = History()
    tail._versions = history._versions  # noqa: SLF001 - the same platform, later
    for n in range(5):
        tail.request(f"late{n}")
    tail.place(["late0"], "a1")
    tail.terminate("b0x99", "a9")
    await publish_history(js, tail.events)

    restored, following = await _restored(js)
    await following.stop()
    assert following.delivered == len(tail.events)  # not the 10,000 sessions' history before the checkpoint
    state = restored.export()
    assert [p.request.session_id for p in state.pending] == [f"late{n}" for n in range(1, 5)]
    assert {q.name: len(q.holding) for q in state.quotas} == {"alice": 100, "default": 100}
    assert len(state.versions) < 30  # agents, quota scopes, tenancy and pending sessions: not every session
    assert sum(len(a.allocations) for a in state.agents) == 100


async def test_a_checkpoint_it_cannot_trust_is_ignored(js: JetStreamContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.scheduler.checkpoint")
    history = History()
    history.agent("a1")
    history.request("s1")
    await publish_history(js, history.events)
    kv = await checkpoint_bucket(js)
    stream = await js.stream_info(EVENTS_STREAM)
    assert await load_checkpoint(kv, stream) is None  # none yet
    snapshot = Snapshot()
    snapshot.apply(history.events[0])

    def put(seq: int, **changes: object) -> bytes:
        checkpoint = decode_checkpoint(encode_checkpoint(snapshot.export(), seq, stream.created))
        return zlib.compress(msgspec.msgpack.encode(msgspec.structs.replace(checkpoint, **changes)))

    bad = {
        "undecodable": b"not a checkpoint",
        "truncated": encode_checkpoint(snapshot.export(), 1, stream.created)[:-10],
        "other schema": put(1, schema="0000000000000000"),
        "other stream": put(1, stream_created=None),
        "past the end": put(stream.state.last_seq + 5),
    }
    for why, data in bad.items():
        await write_chunked(kv, data, CHUNK_BYTES)
        caplog.clear()
        assert await load_checkpoint(kv, stream) is None, why
        assert "ignoring the scheduler checkpoint" in caplog.text, why
    await write_chunked(kv, put(1), CHUNK_BYTES)
    loaded = await load_checkpoint(kv, stream)
    assert loaded is not None and loaded.stream_seq == 1 and loaded.schema == SCHEMA


async def test_pending_sessions_with_large_incompressible_fields_do_not_stop_the_checkpoint(
    js: JetStreamContext,
) -> None:
    """20 pending sessions with a random 64 KiB startup command and the largest mounts each made a
    checkpoint over NATS' max_payload: none was written while they waited, and each start replayed more."""
    history = History()
    history.tenancy()
    history.agent("a1", cpu=1)
    for n in range(20):
        request_heavy(history, f"s{n}")
    await publish_history(js, history.events)
    live, following = await _replayed(js)
    stream = await js.stream_info(EVENTS_STREAM)
    checkpointer = Checkpointer(await checkpoint_bucket(js), live, lambda: following.position, (0, stream.created),
                                js._nc.max_payload - PAYLOAD_ALLOWANCE)  # noqa: SLF001 - as the scheduler sizes it
    assert await checkpointer.write(), "the checkpoint was not written"
    await following.stop()
    head = await read_head(await checkpoint_bucket(js))
    assert head is not None and head.chunks == 1 and head.size < 16 * 1024  # planning fields only

    restored, tail = await _restored(js)
    await tail.stop()
    assert restored.export() == live.export() and len(restored.pending()) == 20


async def test_a_checkpoint_larger_than_a_message_is_written_in_chunks_and_read_back_whole(
    js: JetStreamContext,
) -> None:
    history = History()
    _first_half(history)
    await publish_history(js, history.events)
    live, following = await _replayed(js)
    kv = await checkpoint_bucket(js)
    stream = await js.stream_info(EVENTS_STREAM)
    checkpointer = Checkpointer(kv, live, lambda: following.position, (0, stream.created), 512)
    slots = []
    for _ in range(3):  # the slots take turns: each write leaves the previous checkpoint whole until its head
        assert await checkpointer.write()
        head = await read_head(kv)
        assert head is not None and head.chunks > 1
        slots.append(head.slot)
        loaded = await load_checkpoint(kv, stream)
        assert loaded is not None and Snapshot.restore(loaded.state).export() == live.export()
    await following.stop()
    assert slots == ["a", "b", "a"]


async def test_a_checkpoint_whose_chunks_do_not_add_up_or_of_one_message_is_ignored(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.scheduler.checkpoint")
    history = History()
    _first_half(history)
    await publish_history(js, history.events)
    snapshot = Snapshot()
    for event in history.events:
        snapshot.apply(event)
    kv = await checkpoint_bucket(js)
    stream = await js.stream_info(EVENTS_STREAM)
    data = encode_checkpoint(snapshot.export(), stream.state.last_seq, stream.created)
    bad = {
        "one chunk overwritten (two writers at once)": lambda head: kv.put(chunk_key(head.slot, 1), b"x" * 512),
        "one chunk missing": lambda head: kv.delete(chunk_key(head.slot, 1)),
        "a checkpoint of one message, as written before chunks": lambda head: kv.put(KEY, data),
    }
    for why, spoil in bad.items():
        head = await write_chunked(kv, data, 512)
        assert await load_checkpoint(kv, stream) is not None, why
        await spoil(head)
        caplog.clear()
        assert await load_checkpoint(kv, stream) is None, why
        assert "ignoring the scheduler checkpoint" in caplog.text, why


async def test_a_checkpoint_that_cannot_be_written_is_logged_once_with_its_size(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.scheduler.checkpoint")
    history = History()
    _first_half(history)
    await publish_history(js, history.events)
    live, following = await _replayed(js)
    stream = await js.stream_info(EVENTS_STREAM)
    checkpointer = Checkpointer(await checkpoint_bucket(js), live, lambda: following.position, (0, stream.created),
                                CHUNK_BYTES)
    limit, checkpointer.max_bytes = checkpointer.max_bytes, 256
    size = len(encode_checkpoint(live.export(), following.position, stream.created))
    for _ in range(3):
        assert not await checkpointer.write()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"{size} bytes compressed" in warnings[0] and "above the 256" in warnings[0]
    assert "a start replays EVENTS after sequence 0" in warnings[0]
    checkpointer.max_bytes = limit
    assert await checkpointer.write()
    await following.stop()
    assert f"scheduler checkpoint written again at EVENTS sequence {following.position}" in caplog.text

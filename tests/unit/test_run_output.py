"""A run's output held for a client that reads it more slowly than it comes (``run_output``): asyncio, no I/O."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest

from contracts.execution import ExecChunk, ExecDone
from services.gateway.errors import UNAVAILABLE, GatewayError
from services.gateway.execution import run_output
from services.gateway.execution.run_output import REORDER_WINDOW, RunOutput, dropped_note, lost_note, read_run


@dataclass
class Message:
    data: bytes


def chunk(seq: int, data: str, stream: str = "stdout") -> ExecChunk:
    return ExecChunk(seq=seq, stream=stream, data=data)


async def messages(items: list[ExecChunk | ExecDone], error: Exception | None = None) -> AsyncIterator[Message]:
    for item in items:
        yield Message(msgspec.json.encode(item))
    if error is not None:
        raise error


async def drained(output: RunOutput) -> list[ExecChunk | ExecDone]:
    return [item async for item in output]


async def test_output_past_the_bound_is_dropped_told_where_and_done_is_kept() -> None:
    output = RunOutput(limit=10)
    items = [chunk(0, "a" * 6), chunk(1, "b" * 6), chunk(2, "c" * 3), chunk(3, "d" * 4), ExecDone(seq=4, exit_code=0,
                                                                                              duration_ms=1)]
    await read_run(messages(items), output)  # the client has read nothing yet
    got = await drained(output)
    assert [(item.stream, item.data) for item in got[:-1]] == [  # type: ignore[union-attr]
        ("stdout", "aaaaaa"), ("stderr", dropped_note(6)), ("stdout", "ccc"), ("stderr", dropped_note(4))]
    assert isinstance(got[-1], ExecDone) and output.dropped == 10


async def test_a_client_that_keeps_up_loses_nothing() -> None:
    output = RunOutput(limit=10)
    reading = asyncio.ensure_future(drained(output))
    for seq in range(100):
        output.put(chunk(seq, "x" * 8))
        await asyncio.sleep(0)  # the client takes each before the next comes
    output.put(ExecDone(seq=100, exit_code=0, duration_ms=1))
    got = await reading
    assert "".join(item.data for item in got[:-1]) == "x" * 800 and output.dropped == 0  # type: ignore[union-attr]


async def test_messages_are_put_in_order_of_seq() -> None:
    output = RunOutput()
    items = [chunk(1, "b"), chunk(0, "a"), ExecDone(seq=3, exit_code=2, duration_ms=1), chunk(2, "c")]
    await read_run(messages(items), output)
    got = await drained(output)
    assert [getattr(item, "data", None) for item in got] == ["a", "b", "c", None] and got[-1].exit_code == 2


async def test_an_error_reaches_the_client_after_what_came_before() -> None:
    output = RunOutput()
    await read_run(messages([chunk(0, "a")], GatewayError(UNAVAILABLE, "the run was lost")), output)
    got: list[ExecChunk | ExecDone] = []
    with pytest.raises(GatewayError, match="the run was lost"):
        async for item in output:
            got.append(item)
    assert got == [chunk(0, "a")]


async def test_messages_lost_on_the_way_are_told_where_once_later_ones_pass_the_window() -> None:
    """nats-py drops a run's messages past its bounded queue (``subscribe_run``): the stream goes on after the gap
    with a line saying so, instead of waiting for good for what is not coming."""
    output = RunOutput()
    later = [chunk(seq, "x") for seq in range(3, 3 + REORDER_WINDOW + 1)]
    await read_run(messages([chunk(0, "a"), *later, ExecDone(seq=4 + REORDER_WINDOW, exit_code=0, duration_ms=1)]),
                   output)
    got = await drained(output)
    assert [getattr(item, "data", None) for item in got[:2]] == ["a", lost_note(2)]
    assert "".join(item.data for item in got[2:-1]) == "x" * (REORDER_WINDOW + 1)  # type: ignore[union-attr]
    assert isinstance(got[-1], ExecDone) and output.lost == 2 and output.truncated


async def test_a_done_after_a_gap_ends_the_stream_once_the_gap_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_output, "GAP_WAIT", 0.05)
    quiet = asyncio.Event()

    async def then_nothing() -> AsyncIterator[Message]:
        async for message in messages([chunk(0, "a"), chunk(2, "c"), ExecDone(seq=3, exit_code=4, duration_ms=1)]):
            yield message
        await quiet.wait()  # the subscription stays open, nothing more comes

    output = RunOutput()
    async with asyncio.timeout(30):
        await read_run(then_nothing(), output)
    got = await drained(output)
    assert [getattr(item, "data", None) for item in got] == ["a", lost_note(1), "c", None]
    assert got[-1].exit_code == 4 and output.truncated  # type: ignore[union-attr]

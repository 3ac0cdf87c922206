"""The agent's bounds on a run's output, piece by piece: the rate's books (on a clock the test moves), the
runner lines' schema, chunks cut to the bus's max payload, and the end of a log file read from its end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from contracts.execution import ExecChunk, ExecDone, ExecOutput
from services.agent.backends.log_tail import file_tail, last_lines
from services.agent.bounded_tasks import BoundedTasks
from services.agent.exec_runs import RunRefused, RunTable
from services.agent.exec_stream import _Output
from services.agent.output_rate import OutputRate
from services.agent.runner_lines import (
    MAX_DATA,
    RefusedLine,
    RunnerDone,
    RunnerError,
    RunnerStdout,
    decode_interrupted,
    decode_line,
)
from tests.support.waiting import async_wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_lets_a_burst_through_then_asks_to_wait_what_it_costs() -> None:
    clock = Clock()
    rate = OutputRate(rate=1000, burst=500, clock=clock)
    assert rate.take(400) == 0.0
    assert rate.take(100) == 0.0
    assert rate.take(250) == pytest.approx(0.25)  # 250 bytes owed at 1000 B/s
    clock.now += 0.25
    assert rate.take(0) == 0.0
    clock.now += 3600
    assert rate.take(600) == pytest.approx(0.1), "an idle hour earns one burst, no more"
    with pytest.raises(ValueError):
        OutputRate(rate=0)


def test_runner_lines_are_decoded_strictly() -> None:
    assert decode_line(b'{"run_id": "r", "kind": "stdout", "data": "x"}\n') == RunnerStdout(run_id="r", data="x")
    assert decode_line(b'{"kind": "done", "exit_code": 130, "duration_ms": 5}') == RunnerDone(exit_code=130,
                                                                                              duration_ms=5)
    assert decode_line(b'{"kind": "error", "message": "bad"}') == RunnerError(message="bad")
    assert isinstance(decode_line(b'{"kind": "stderr", "data": "' + b"y" * MAX_DATA + b'"}'), msgspec.Struct)
    for line in (b"{}", b"[]", b"null", b'{"kind": "stdout", "data": 1}', b'{"kind": "stdout"}',
                 b'{"kind": "done", "exit_code": 2147483648, "duration_ms": 0}',
                 b'{"kind": "done", "exit_code": 1.0, "duration_ms": 0}',
                 b'{"kind": "stdout", "data": "' + b"y" * (MAX_DATA + 1) + b'"}',
                 b'{"kind": "stdout", "data": "x", "run_id": "' + b"r" * 300 + b'"}'):
        with pytest.raises(RefusedLine):
            decode_line(line)
    assert decode_interrupted(b'{"op": "interrupted", "run_id": "r", "ok": false}\n') is False
    with pytest.raises(RefusedLine):
        decode_interrupted(b'{"op": "pong", "ok": true}')


class Bus:
    max_payload = 1000

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def publish(self, subject: str, data: bytes) -> None:
        assert len(data) <= self.max_payload, "nats-py raises MaxPayloadError"
        self.sent.append(data)


async def test_a_chunk_larger_than_the_bus_takes_is_cut_and_every_piece_fits() -> None:
    bus = Bus()
    output = _Output(bus, "io.x")  # type: ignore[arg-type]
    data = "\x1b" * 700 + "é" * 700 + "x" * 3000
    await output.chunk("stdout", data)
    await output.end(0, 7)
    items = [msgspec.json.decode(sent, type=ExecOutput) for sent in bus.sent]
    assert "".join(i.data for i in items if isinstance(i, ExecChunk)) == data
    assert [i.seq for i in items] == list(range(len(items))) and isinstance(items[-1], ExecDone)


async def test_bounded_tasks_refuse_past_either_bound_and_free_their_place() -> None:
    gate = asyncio.Event()
    tasks = BoundedTasks("requests", per_kernel=1, total=2)
    assert tasks.start("k1", gate.wait, "a") is None
    assert "for kernel k1 already (at most 1 at once per kernel)" in (tasks.start("k1", gate.wait, "b") or "")
    assert tasks.start("k2", gate.wait, "c") is None
    assert "handling 2 requests already (at most 2 at once)" in (tasks.start("k3", gate.wait, "d") or "")
    gate.set()
    await async_wait_for(lambda: len(tasks) == 0, timeout=5)
    assert tasks.start("k1", gate.wait, "e") is None
    await tasks.close()


async def test_a_run_ended_before_its_stream_started_is_cancelled_as_it_starts() -> None:
    table = RunTable(per_kernel=1, total=5)
    run = table.reserve("r1", "k1")
    with pytest.raises(RunRefused, match="already running"):
        table.reserve("r1", "k1")
    with pytest.raises(RunRefused, match="kernel k1 has 1 runs streaming already"):
        table.reserve("r2", "k1")
    assert table.end("r1", None) and run.ended
    task = asyncio.create_task(asyncio.Event().wait())
    table.attach("r1", run, task)
    with pytest.raises(asyncio.CancelledError):
        await task
    await async_wait_for(lambda: "r1" not in table, timeout=5, message="the run's place was not freed")
    assert table.kernels() == []


def test_a_log_file_is_read_from_its_end(tmp_path: Path) -> None:
    path = tmp_path / "log"
    data = b"".join(b"line %06d\n" % i for i in range(100_000))
    path.write_bytes(data)
    assert file_tail(path, 2, 1 << 20) == "line 099998\nline 099999\n"
    assert file_tail(path, None, 20) == data[-20:].decode() == " 099998\nline 099999\n"
    assert file_tail(tmp_path / "none") == ""
    assert last_lines("a\nb\n", 0) == "" and last_lines("a\nb", None) == "a\nb"

"""What a kernel's runner sends is checked and paced by the agent: lines outside the strict schema end the run
with a word to its client and its ``done`` (a reply that was not an object, a non-integer exit code or deep
nesting killed the stream without one: the client was told "agent restarted" after 11 s), and a runner that
outwrites the rate is read no faster than it (a replaced runner pushed 307 MB/s to the bus)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from contracts.execution import ExecRequest
from services.agent import output_rate
from tests.support.exec_agent import FakeRunner, ScriptedBackend, run, serving
from tests.support.waiting import async_wait_for

DEEP = 50_000
REFUSED = {
    "not an object": b"[1]",
    "a string": b'"done"',
    "an exit code that is no integer": b'{"kind": "done", "exit_code": "0", "duration_ms": 1}',
    "an exit code past int32": b'{"kind": "done", "exit_code": 4294967296, "duration_ms": 1}',
    "a negative duration": b'{"kind": "done", "exit_code": 0, "duration_ms": -1}',
    "deep nesting": b'{"kind": "stdout", "data": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "data past 64 KiB": b'{"kind": "stdout", "data": "' + b"x" * (100 << 10) + b'"}',
    "an unknown kind": b'{"kind": "exit", "exit_code": 0}',
    "an unknown field": b'{"kind": "stdout", "data": "x", "extra": {"a": 1}}',
    "no JSON": b"\xff\xfe not json",
}


def says(*lines: bytes):  # noqa: ANN201 - a runner behaviour
    async def behaviour(request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(line + b"\n" for line in lines))
        await writer.drain()

    return behaviour


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path)


@pytest.mark.parametrize("line", list(REFUSED.values()), ids=list(REFUSED))
async def test_a_line_outside_the_schema_ends_the_run_with_its_done_and_a_word(
    nats_url: str, backend: ScriptedBackend, line: bytes,
) -> None:
    first = json.dumps({"kind": "stdout", "data": "before\n"}).encode()
    runner = await FakeRunner(backend.runner_socket("k1"), says(first, line)).start()
    try:
        async with serving(nats_url, backend) as served:
            request = run("k1")
            output = await served.output("k1", request.run_id)
            assert (await served.ask(request)).ok
            done = await output.until_done()
            assert done.exit_code == 1
            assert output.text("stdout") == "before\n"
            assert output.text().startswith("berth: the kernel's runner sent what the agent refuses (")
            assert [item.seq for item in output.items] == list(range(len(output.items)))
            await async_wait_for(lambda: runner.ended == 1, timeout=10, message="the runner connection stayed")
            await async_wait_for(lambda: served.server.busy_kernels() == [], timeout=10)
    finally:
        await runner.close()


async def test_a_runners_own_end_passes_as_it_is(nats_url: str, backend: ScriptedBackend) -> None:
    lines = [json.dumps({"run_id": "r", "kind": "stderr", "data": "é\x1b\n"}).encode(), b"",
             json.dumps({"run_id": "r", "kind": "done", "exit_code": -(2**31), "duration_ms": 2**40}).encode()]
    runner = await FakeRunner(backend.runner_socket("k1"), says(*lines)).start()
    try:
        async with serving(nats_url, backend) as served:
            request = run("k1")
            output = await served.output("k1", request.run_id)
            assert (await served.ask(request)).ok
            done = await output.until_done()
            assert (done.exit_code, done.duration_ms, output.text()) == (-(2**31), 2**31 - 1, "é\x1b\n")
    finally:
        await runner.close()


LINE = 16 << 10


async def flood(request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = (json.dumps({"run_id": request["run_id"], "kind": "stdout", "data": "x" * LINE}) + "\n").encode()
    while True:
        writer.write(line * 4)
        await writer.drain()


async def test_a_runner_that_outwrites_the_rate_is_read_no_faster_than_it(
    nats_url: str, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However slow or fast the machine, ``burst + rate x elapsed`` bounds what went out (plus the line read last)."""
    monkeypatch.setattr(output_rate, "RATE", 256 << 10)
    monkeypatch.setattr(output_rate, "BURST", 128 << 10)
    runner = await FakeRunner(backend.runner_socket("k1"), flood).start()
    try:
        async with serving(nats_url, backend) as served:
            request = run("k1")
            output = await served.output("k1", request.run_id)
            began = time.monotonic()
            assert (await served.ask(request)).ok
            async with asyncio.timeout(60):
                while output.data_chars < (128 << 10) + (256 << 10):
                    await output.next()
            elapsed = time.monotonic() - began
            line_bytes = LINE + 100
            assert elapsed >= (output.data_chars - (128 << 10) - line_bytes) / (256 << 10)
            await served.ask(ExecRequest(run_id=request.run_id, kernel_id="k1", code="", interrupt=True, cancel=True))
            await async_wait_for(lambda: runner.ended == 1, timeout=10)
    finally:
        await runner.close()

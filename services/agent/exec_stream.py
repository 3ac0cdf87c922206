"""One run's output, from its kernel's runner to ``io.agent.<agent>.<kernel>.<run>``, always ended by a ``done``.

``stream_run`` reads the runner's lines (each at most ``RUN_LINE_LIMIT`` bytes, decoded against the strict
schema of ``runner_lines``) at most at ``output_rate``'s pace, counting the characters of output they carry
against the run's own rate, its kernel's and its agent's (``OutputBudgets``, the exec server's): a
run that outruns one is not read until the allowance is paid back (the socket's buffers fill and the runner's
writes wait). Each output line becomes one
``ExecChunk`` or more (a chunk is cut to fit the bus's max payload). Whatever ends the stream (the runner's
``done`` or ``error``, the runner gone, a line refused, a failure to publish, the agent ending the run:
``exec_runs``), the client gets a last ``ExecDone``, after a line on stderr saying why when it was not the
run's own end; only a stream ended without a note (its client gone, the agent stopping) sends nothing more.
The runner's answers to interrupts sent on the run's connection (``exec_runs``) are read and passed over.
``not_started`` ends the stream of a run interrupted before it was sent to its runner, as the runner ends one
interrupted before it started.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.client import Client as Nats

from contracts.execution import ExecChunk, ExecDone
from services.agent.exec_runs import Run
from services.agent.output_rate import OutputRate, RunBudget
from services.agent.runner_lines import (
    INT32,
    RefusedLine,
    RunnerDone,
    RunnerError,
    RunnerLine,
    RunnerStderr,
    RunnerStdout,
    decode_interrupted,
    decode_line,
)
from services.agent.runner_socket import abort

__all__ = ["INTERRUPTED", "RUN_LINE_LIMIT", "not_started", "stream_run"]

log = logging.getLogger(__name__)

RUN_LINE_LIMIT = 128 << 10
"""Bytes of one runner line on a run's connection (the runner's are at most 16 KiB of output, escaped:
< 100 KiB); the connection buffers at most twice that before it stops reading."""
INTERRUPTED = 130
"""Exit code of a run interrupted before it started (the runner's, as Ctrl-C's KeyboardInterrupt)."""
_ENVELOPE = 256
"""Bytes of an ``ExecChunk`` besides its data (kind, seq, stream)."""
_WORST_CHARACTER = 6
"""Bytes of one character in the worst case, encoded in JSON (a control character: ``\\u001b``)."""


class _Output:
    """Publishes one run's chunks and its ``done``, numbered from 0."""

    def __init__(self, nc: Nats, subject: str) -> None:
        self._nc = nc
        self._subject = subject
        self._seq = 0
        self.done = False

    async def chunk(self, stream: str, data: str) -> None:
        """Publishes ``data`` as one chunk, or as several where one would exceed the bus's max payload."""
        piece = max(1, (self._nc.max_payload - _ENVELOPE) // _WORST_CHARACTER)
        for start in range(0, len(data), piece):
            await self._publish(ExecChunk(seq=self._seq, stream=stream, data=data[start:start + piece]))

    async def end(self, exit_code: int, duration_ms: int = 0) -> None:
        """Publishes the run's ``done``."""
        self.done = True
        await self._publish(ExecDone(seq=self._seq, exit_code=exit_code, duration_ms=min(duration_ms, INT32)))

    async def fail(self, note: str, exit_code: int = 1) -> None:
        """Tells the client ``note`` on stderr, then ends the run with ``exit_code``; a failure here is logged."""
        try:
            await self.chunk("stderr", note)
            await self.end(exit_code)
        except Exception as exc:  # noqa: BLE001 - the bus is away: the gateway's probe finds the run lost
            log.warning("could not end the stream of %s: %s", self._subject, exc)

    async def _publish(self, item: ExecChunk | ExecDone) -> None:
        await self._nc.publish(self._subject, msgspec.json.encode(item))
        self._seq += 1


async def not_started(nc: Nats, subject: str) -> None:
    """Ends the stream of a run interrupted before it was sent to its runner: a line on stderr, then its ``done``
    with ``INTERRUPTED``, as the runner ends a run interrupted while it waited there."""
    await _Output(nc, subject).fail("berth: interrupted before it started: the run did not run\n", INTERRUPTED)


async def stream_run(nc: Nats, subject: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, run: Run,
                     output_rate: OutputRate | RunBudget) -> None:
    """Streams the run's output from ``reader`` to ``subject`` until its end (see the module's docstring), then
    closes the runner connection. ``output_rate``: what its reads are charged to (``OutputBudgets.for_run``: the
    run's own rate, its kernel's and its agent's)."""
    output = _Output(nc, subject)
    try:
        await _relay(reader, output, output_rate)
    except asyncio.CancelledError:
        if run.ending is not None and not output.done:
            await output.fail(run.ending)
        raise
    except RefusedLine as exc:
        log.warning("%s: refused the kernel runner's output: %s", subject, exc)
        await output.fail(f"berth: the kernel's runner sent what the agent refuses ({exc}): this run's output "
                          "ends here (it may still run in the kernel)\n")
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the client gets its done
        log.warning("%s: lost the runner stream: %r", subject, exc)
        if not output.done:
            await output.fail(f"berth: the agent lost this run's output stream ({type(exc).__name__}): it ends here "
                              "(the run may still go on in the kernel)\n")
    finally:
        abort(writer)


async def _relay(reader: asyncio.StreamReader, output: _Output, rate: OutputRate | RunBudget) -> None:
    """Publishes the runner's lines until the run's end. Each line costs the rate the characters of output it
    carries, or a sixth of its bytes when that is more (the most an escaped character takes: a line padded
    with anything but output costs too)."""
    while True:
        line = await _next_line(reader)
        if not line:
            await output.fail("the kernel runner went away\n")
            return
        item = _decoded(line)
        carried = len(item.data) if isinstance(item, (RunnerStdout, RunnerStderr)) else 0
        pause = rate.take(max(carried, len(line) // _WORST_CHARACTER))
        if isinstance(item, (RunnerStdout, RunnerStderr)):
            await output.chunk("stdout" if isinstance(item, RunnerStdout) else "stderr", item.data)
        elif isinstance(item, RunnerDone):
            await output.end(item.exit_code, item.duration_ms)
            return
        elif isinstance(item, RunnerError):
            await output.fail(f"{item.message}\n")
            return
        if pause:
            await asyncio.sleep(pause)


def _decoded(line: bytes) -> RunnerLine | None:
    """Returns the runner's ``line`` decoded; None for a blank line or an answer to an interrupt; RefusedLine
    (saying what was wrong as a run's line) for anything else."""
    if not line.strip():
        return None
    try:
        return decode_line(line)
    except RefusedLine as refused:
        try:
            decode_interrupted(line)
        except RefusedLine:
            raise refused from None
        return None


async def _next_line(reader: asyncio.StreamReader) -> bytes:
    """Returns the runner's next line (its last one may lack the newline), b"" at the end; RefusedLine when
    it is longer than the reader's limit."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except asyncio.LimitOverrunError:
        raise RefusedLine(f"a line longer than {RUN_LINE_LIMIT // 1024} KiB") from None

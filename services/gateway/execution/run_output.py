"""A run's output between its agent and a client that may read it more slowly than it comes.

The agent streams a run's output over core NATS (no flow control) at its runner's rate, at most
``OUTPUT_RATE`` (1 MiB/s) per run; the client reads it over its websocket at its own pace, which can
be none for a while (a terminal paused, a pager waiting, a slow link). ``read_run`` takes the messages
off the subscription as they come, in order of ``seq``, into a ``RunOutput``: at most ``MAX_BUFFERED``
characters of output wait for the client; past that, new output is dropped and counted, and the client
finds, where it was dropped, one line on stderr saying how much and why. The run's ``done`` is never
dropped, and nats-py's own queue of the subscription never grows (its slow-consumer drops would lose
messages silently, ``done`` among them, and the stream would wait for it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from nats.aio.msg import Msg

from contracts.execution import ExecChunk, ExecDone, ExecOutput, output_dropped_note
from services.common.backlog import Backlog

__all__ = ["MAX_BUFFERED", "RunOutput", "dropped_note", "read_run"]

MAX_BUFFERED = 1 << 20
"""Characters of a run's output held for a client that reads more slowly than the run writes: a second of
the runner's rate (beside what the connection's buffers hold). No more: a caller may hold 64 streams whose
clients never read (64 MiB, as when each run's output was cut at 1 MiB). ``berth exec`` reads its websocket
whatever its stdout does, and holds up to 64 M characters itself (``services.cli.exec_cmd.BACKLOG``)."""


def dropped_note(characters: int) -> str:
    """The line a client finds where output was dropped."""
    return output_dropped_note(characters, "this client")


class RunOutput(Backlog[ExecChunk | ExecDone]):
    """The items of one run waiting for its client, at most ``limit`` (default ``MAX_BUFFERED``) characters
    of output; filled by ``read_run``, emptied by iterating; ``done`` is never dropped."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(MAX_BUFFERED if limit is None else limit, _characters, _note, _is_done)


def _characters(item: ExecChunk | ExecDone) -> int | None:
    return len(item.data) if isinstance(item, ExecChunk) else None


def _note(dropped: int, before: ExecChunk | ExecDone) -> ExecChunk:
    return ExecChunk(seq=before.seq, stream="stderr", data=dropped_note(dropped))


def _is_done(item: ExecChunk | ExecDone) -> bool:
    return isinstance(item, ExecDone)


async def read_run(messages: AsyncIterator[Msg], output: RunOutput) -> None:
    """Puts the run's messages into ``output`` in order of ``seq`` (one that comes early waits for those
    before it), up to ``done``; an error of ``messages`` (the run lost, the session ended) goes to ``output``."""
    early: dict[int, ExecOutput] = {}
    expected = 0
    try:
        async for msg in messages:
            item = msgspec.json.decode(msg.data, type=ExecOutput)
            early[item.seq] = item
            while expected in early:
                item = early.pop(expected)
                expected += 1
                output.put(item)
                if isinstance(item, ExecDone):
                    return
    except Exception as exc:  # noqa: BLE001 - told to the client through the stream, after what came before
        output.fail(exc)

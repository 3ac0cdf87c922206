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

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import msgspec
from nats.aio.msg import Msg

from contracts.execution import ExecChunk, ExecDone, ExecOutput

__all__ = ["MAX_BUFFERED", "RunOutput", "dropped_note", "read_run"]

MAX_BUFFERED = 8 << 20
"""Characters of a run's output held for a client that reads more slowly than the run writes: 8 s of
the runner's rate (a paused terminal resumed within them loses nothing)."""


def dropped_note(characters: int) -> str:
    """The line a client finds where output was dropped."""
    return (f"\nberth: {characters:,} characters of output dropped here: this client read the run's output more "
            "slowly than the run wrote it\n")


class RunOutput:
    """The items of one run waiting for its client, bounded; filled by ``read_run``, emptied by iterating."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = MAX_BUFFERED if limit is None else limit
        self._items: deque[ExecChunk | ExecDone] = deque()
        self._size = 0
        self._gap = 0
        """Characters dropped since the last item kept (told before the next one)."""
        self.dropped = 0
        """Characters dropped in all."""
        self._error: BaseException | None = None
        self._changed = asyncio.Event()

    def put(self, item: ExecOutput) -> None:
        """Keeps ``item`` for the client, or drops it (an output chunk past the bound)."""
        if isinstance(item, ExecChunk) and self._size + len(item.data) > self._limit:
            self._gap += len(item.data)
            self.dropped += len(item.data)
            return
        if self._gap:
            self._keep(ExecChunk(seq=item.seq, stream="stderr", data=dropped_note(self._gap)))
            self._gap = 0
        self._keep(item)

    def fail(self, error: BaseException) -> None:
        """Ends the stream with ``error`` once the client has what came before it."""
        self._error = error
        self._changed.set()

    def _keep(self, item: ExecChunk | ExecDone) -> None:
        self._items.append(item)
        if isinstance(item, ExecChunk):
            self._size += len(item.data)
        self._changed.set()

    async def __aiter__(self) -> AsyncIterator[ExecChunk | ExecDone]:
        """Yields the items in order, up to ``done``; raises the error ``fail`` was given after what came before."""
        while True:
            while self._items:
                item = self._items.popleft()
                if isinstance(item, ExecChunk):
                    self._size -= len(item.data)
                yield item
                if isinstance(item, ExecDone):
                    return
            if self._error is not None:
                raise self._error
            self._changed.clear()
            await self._changed.wait()


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

"""A Unix-socket forwarder a test can cut: every connection to ``path`` is piped to ``target``; ``cut()``
closes them all mid-stream (what a restarting Docker engine does to its clients' long requests) and
the proxy goes on accepting new ones."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

__all__ = ["SocketProxy"]


class SocketProxy:
    """Forwards ``path`` to ``target`` until ``close``."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> SocketProxy:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    @property
    def connections(self) -> int:
        """How many connections are open through the proxy."""
        return len(self._writers) // 2

    def cut(self) -> None:
        """Closes every connection now, in the middle of whatever it carries."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        for task in list(self._pipes):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

"""The one hop from asyncio to the synchronous event store.

``eventsourcing`` (and psycopg in blocking mode) must never run on the event loop. A service
holds one ``Facade``: a bounded thread pool on which it opens its use cases
(``await facade.open(Sessions, dsn)``) and calls them (``await facade.call(sessions.get, id)``);
``close`` closes what it opened, on the same threads, then lets the threads go.

A facade with one thread also keeps a thread-bound resource (the projector's connection, the
relay's reader) on that one thread.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, TypeVar

__all__ = ["Facade"]

T = TypeVar("T")


class _Closeable(Protocol):
    def close(self) -> None: ...


class Facade:
    """Runs blocking store calls on a bounded pool of ``threads`` worker threads."""

    def __init__(self, name: str, threads: int = 1) -> None:
        """``name`` prefixes the worker threads' names (seen in thread dumps and logs)."""
        if threads < 1:
            raise ValueError(f"a facade needs at least one thread, got {threads}")
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._opened: list[_Closeable] = []

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Returns ``fn(*args, **kwargs)`` run on one of the facade's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def open(self, factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Builds ``factory(*args, **kwargs)`` (a use case: it connects) on a facade thread;
        ``close`` closes it."""
        opened = await self.call(factory, *args, **kwargs)
        self._opened.append(opened)  # type: ignore[arg-type]
        return opened

    async def close(self, *, wait: bool = False) -> None:
        """Closes what ``open`` built (last first), then shuts the pool down; with ``wait``, waits
        for its threads to finish what they run."""
        try:
            while self._opened:
                await self.call(self._opened.pop().close)
        finally:
            self._executor.shutdown(wait=wait)

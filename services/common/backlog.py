"""What waits for a consumer slower than its producer, bounded: ``Backlog``.

Items go in as they come (``put``, which never waits) and out in order (``async for``). Items that have
a size (output) are held up to ``limit`` in all; past it, new ones are dropped and counted (``dropped``),
and before the next item kept the consumer finds the one ``note(dropped, next_item)`` makes (where and
how much). Items without a size (a run's end) are never dropped. The iteration ends after an item that
``last`` says is the last, at ``close``, or with the error given to ``fail``, once what came before is out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["Backlog"]

T = TypeVar("T")


class Backlog(Generic[T]):
    """Items waiting for one consumer, at most ``limit`` of size in all (see the module)."""

    def __init__(self, limit: int, size: Callable[[T], int | None], note: Callable[[int, T], T],
                 last: Callable[[T], bool]) -> None:
        self._limit = limit
        self._size_of = size
        self._note = note
        self._last = last
        self._items: deque[tuple[T, int]] = deque()
        self._size = 0
        self._gap = 0
        """Size dropped since the last item kept (told before the next one)."""
        self.dropped = 0
        """Size dropped in all."""
        self._end: BaseException | None = None
        self._closed = False
        self._changed = asyncio.Event()

    def put(self, item: T) -> None:
        """Keeps ``item`` for the consumer, or drops it (one with a size, past the bound)."""
        size = self._size_of(item)
        if size is not None and self._size + size > self._limit:
            self._gap += size
            self.dropped += size
            return
        if self._gap:
            note = self._note(self._gap, item)
            self._keep(note, self._size_of(note) or 0)
            self._gap = 0
        self._keep(item, size or 0)

    def fail(self, error: BaseException) -> None:
        """Ends the iteration with ``error`` once the consumer has what came before it."""
        self._end = error
        self._changed.set()

    def close(self) -> None:
        """Ends the iteration once the consumer has what came before."""
        self._closed = True
        self._changed.set()

    def _keep(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self._size += size
        self._changed.set()

    async def __aiter__(self) -> AsyncIterator[T]:
        """Yields the items in order (see the module for how it ends)."""
        while True:
            while self._items:
                item, size = self._items.popleft()
                self._size -= size
                yield item
                if self._last(item):
                    return
            if self._end is not None:
                raise self._end
            if self._closed:
                return
            self._changed.clear()
            await self._changed.wait()

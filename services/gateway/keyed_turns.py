"""Turns per key: at most ``size`` holders of one key at a time, the others waiting in order.

The gateway's callers are keypairs; a few of their requests must not run side by side
(``pending_gate``: one enqueue at a time) and none may crowd the others out (``auth.middleware``: a
keypair's requests in flight). A key's semaphore is kept only while some request holds or awaits it, so
the table is as large as the keypairs active right now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["KeyedTurns"]


class KeyedTurns:
    """A semaphore of ``size`` per key, kept only while some request holds or awaits it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._turns: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Holds one of ``key``'s turns: once ``size`` are held, its other requests wait until one leaves."""
        turns, users = self._turns.get(key) or (asyncio.Semaphore(self._size), 0)
        self._turns[key] = (turns, users + 1)
        try:
            async with turns:
                yield
        finally:
            turns, users = self._turns[key]
            if users == 1:
                del self._turns[key]
            else:
                self._turns[key] = (turns, users - 1)

    def __len__(self) -> int:
        """Returns how many keys have a request holding or awaiting a turn."""
        return len(self._turns)

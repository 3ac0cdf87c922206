"""One enqueue at a time per keypair whose resource policy limits its pending sessions.

``max_pending_session_count`` and ``max_pending_session_resource_slots`` are checked against the
``sessions`` read model. Two requests that both counted before either was recorded both passed (six
concurrent creates under a limit of 2 left 3 pending), and a request counted before the read models
had the one admitted just before it. So a limited keypair's requests pass ``PendingGate.turn`` one at a
time, each counting once the read models reached the event store's position and recording before the
next one counts (``services.gateway.sessions.enqueue.enqueued``). Keypairs without such a limit take no
turn and wait for nothing. The turns are those of one gateway process: a keypair that sends to N gateway
processes at once could pass its limit by N - 1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["PendingGate"]


class PendingGate:
    """A lock per keypair, kept only while some request holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, access_key: str) -> AsyncIterator[None]:
        """Holds ``access_key``'s turn: its other requests wait until this one leaves."""
        lock, users = self._locks.get(access_key) or (asyncio.Lock(), 0)
        self._locks[access_key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[access_key]
            if users == 1:
                del self._locks[access_key]
            else:
                self._locks[access_key] = (lock, users - 1)

    def __len__(self) -> int:
        """Returns how many keypairs have a request holding or awaiting their turn."""
        return len(self._locks)

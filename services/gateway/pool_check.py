"""The gateway pool's check of the connections it hands out, and what it does on a broken one.

After PostgreSQL restarted (or dropped every connection), each idle connection of the pool is dead,
and, unchecked, each of the next requests met one: UNAVAILABLE over HTTP, or a websocket closed
without a reason. ``psycopg_pool``'s own check (one empty statement) finds them, but discards one at
a time, backing off between tries, and the replacements join the end of the queue: a request waited
out the pool's whole wait behind eight dead connections. So the first broken connection found also
has the pool check every idle connection at once (``AsyncConnectionPool.check``: broken ones
replaced), and the request's next try gets a live one.

A connection returned less than ``CHECK_AFTER_IDLE`` seconds ago is handed out unchecked: under load
the round trip of a check on every connection cost the API 15 % of its createSession rate
(``bench_api.py``), and a server that restarts in less than that is answered UNAVAILABLE, which clients
retry, for at most that long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from weakref import WeakKeyDictionary

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

__all__ = ["CHECK_AFTER_IDLE", "SweepingCheck"]

log = logging.getLogger(__name__)

CHECK_AFTER_IDLE = 1.0
"""Seconds a connection rests in the pool before it is checked as it is handed out again."""


class SweepingCheck:
    """A pool's ``check`` and ``reset``: a connection idle for ``CHECK_AFTER_IDLE`` seconds or more (or new)
    is checked with one empty statement; a broken one has the pool sweep its idle ones."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool: AsyncConnectionPool | None = None
        """The pool it checks for (set once the pool exists)."""
        self._clock = clock
        self._returned: WeakKeyDictionary[AsyncConnection, float] = WeakKeyDictionary()
        self._sweep: asyncio.Task[None] | None = None

    async def returned(self, conn: AsyncConnection) -> None:
        """The pool's ``reset``: notes when ``conn`` came back."""
        self._returned[conn] = self._clock()

    async def __call__(self, conn: AsyncConnection) -> None:
        """The pool's ``check``: raises when ``conn``, idle long enough to be doubted, is broken."""
        returned = self._returned.get(conn)
        if returned is not None and self._clock() - returned < CHECK_AFTER_IDLE:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            self._sweep_idle()
            raise

    def _sweep_idle(self) -> None:
        if self.pool is None or (self._sweep is not None and not self._sweep.done()):
            return
        log.warning("the database dropped a pooled connection; checking the pool's idle connections")
        self._sweep = asyncio.ensure_future(self.pool.check())
        self._sweep.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("checking the pool's idle connections failed: %s", task.exception())

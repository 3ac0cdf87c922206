"""The gateway pool's check of each connection it hands out, and what it does on a broken one.

After PostgreSQL restarted (or dropped every connection), each idle connection of the pool is dead,
and, unchecked, each of the next requests met one: UNAVAILABLE over HTTP, or a websocket closed
without a reason. ``psycopg_pool``'s own check (one empty statement) finds them, but discards one at
a time, backing off between tries, and the replacements join the end of the queue: a request waited
out the pool's whole wait behind eight dead connections. So the first broken connection found also
has the pool check every idle connection at once (``AsyncConnectionPool.check``: broken ones
replaced), and the request's next try gets a live one.
"""

from __future__ import annotations

import asyncio
import logging

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

__all__ = ["SweepingCheck"]

log = logging.getLogger(__name__)


class SweepingCheck:
    """A pool's ``check``: one empty statement; a broken connection has the pool sweep its idle ones."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None
        """The pool it checks for (set once the pool exists)."""
        self._sweep: asyncio.Task[None] | None = None

    async def __call__(self, conn: AsyncConnection) -> None:
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

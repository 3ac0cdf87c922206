"""The relay's side of the event store: the notification log, and a LISTEN connection that says
when new events were committed.

The log is read on an asynchronous connection of its own (one indexed SELECT after the last id,
the statement ``eventsourcing``'s recorder runs, but with binary rows: a state crosses as its bytes,
not hex-encoded as text: half the client's CPU of a read), not through the synchronous recorder on a
worker thread: a relay hop is on every step of a session's start, and the two thread hand-offs
per read cost more than the read on a busy node. The application (on one worker thread) only
creates the table and answers the last id. Writers lock the events table while they insert, so
notification ids become visible in order and reading ``id > last`` never skips a committed event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql

from services.application.facade import Facade
from services.common.pg_limits import limited_dsn
from services.common.store import BerthApplication

__all__ = ["ChangeSignal", "NotificationSource"]

log = logging.getLogger(__name__)


class NotificationSource:
    """Reads the notification log of the event store (the application, on one worker thread,
    creates the table and answers the last id; reads go on a connection of their own)."""

    def __init__(self, app: BerthApplication, store: Facade, dsn: str) -> None:
        """Wraps an application opened by ``store``; use ``open`` to build one."""
        self._app = app
        self._store = store
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        recorder = app.recorder
        self._select = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(recorder.datastore.schema),  # type: ignore[attr-defined]
                 sql.Identifier(recorder.events_table_name))  # type: ignore[attr-defined]

    @classmethod
    async def open(cls, dsn: str) -> NotificationSource:
        """Returns a source on the event store at ``dsn`` (creating its table when missing)."""
        store = Facade("relay-store")
        try:
            app = await store.open(BerthApplication, dsn)
        except BaseException:
            await store.close()  # nothing opened: only lets the thread go
            raise
        return cls(app, store, dsn)

    @property
    def channel(self) -> str:
        """Returns the channel that writers NOTIFY after inserting events."""
        return str(self._app.recorder.channel_name)  # type: ignore[attr-defined]

    async def read(self, after: int, limit: int) -> Sequence[Notification]:
        """Returns up to ``limit`` notifications with ids above ``after``, in id order; raises when
        the database fails (the next read connects again)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(limited_dsn(self._dsn), autocommit=True)
            cursor = await self._conn.execute(self._select, (after, limit), prepare=True, binary=True)
            rows = await cursor.fetchall()
        except (psycopg.Error, asyncio.CancelledError):  # broken, or left mid-query: the next read connects
            await self._drop_connection()
            raise
        return [Notification(id=row[0], originator_id=row[1], originator_version=row[2], topic=row[3],
                             state=bytes(row[4])) for row in rows]

    async def max_id(self) -> int:
        """Returns the last notification id in the store (0 when empty)."""
        return await self._store.call(self._app.position)

    async def close(self) -> None:
        """Closes the reading connection, the application's connections and the worker thread."""
        await self._drop_connection()
        await self._store.close(wait=True)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()


class ChangeSignal:
    """Sets ``changed`` whenever the event store notifies its channel (and after each reconnect,
    so that nothing notified while disconnected is missed)."""

    def __init__(self, dsn: str, channel: str, retry_interval: float = 1.0) -> None:
        """Prepares the signal; ``run`` listens until cancelled."""
        self.changed = asyncio.Event()
        self._dsn = dsn
        self._channel = channel
        self._retry_interval = retry_interval

    async def run(self) -> None:
        """Listens on the channel until cancelled, reconnecting after errors."""
        while True:
            try:
                await self._listen()
            except psycopg.Error as exc:
                log.warning("LISTEN %s failed (%s); retrying in %.1f s", self._channel, exc, self._retry_interval)
            self.changed.set()
            await asyncio.sleep(self._retry_interval)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(limited_dsn(self._dsn), autocommit=True) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.changed.set()
            async for _ in conn.notifies():
                self.changed.set()

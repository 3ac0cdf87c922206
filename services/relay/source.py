"""The relay's side of the event store: the notification log, read in a bounded thread, and a
LISTEN connection that says when new events were committed.

``eventsourcing`` is synchronous, so reads run on one dedicated worker thread, never on the
event loop. Writers lock the events table while they insert, so notification ids become
visible in order and reading ``id > last`` never skips a committed event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql

from services.application.facade import Facade
from services.common.pg_limits import limited_dsn
from services.common.store import BerthApplication

__all__ = ["ChangeSignal", "NotificationSource"]

log = logging.getLogger(__name__)


class NotificationSource:
    """Reads the notification log of the event store on one worker thread."""

    def __init__(self, app: BerthApplication, store: Facade) -> None:
        """Wraps an application opened by ``store``; use ``open`` to build one."""
        self._app = app
        self._store = store

    @classmethod
    async def open(cls, dsn: str) -> NotificationSource:
        """Returns a source on the event store at ``dsn`` (creating its table when missing)."""
        store = Facade("relay-store")
        try:
            app = await store.open(BerthApplication, dsn)
        except BaseException:
            await store.close()  # nothing opened: only lets the thread go
            raise
        return cls(app, store)

    @property
    def channel(self) -> str:
        """Returns the channel that writers NOTIFY after inserting events."""
        return str(self._app.recorder.channel_name)  # type: ignore[attr-defined]

    async def read(self, after: int, limit: int) -> Sequence[Notification]:
        """Returns up to ``limit`` notifications with ids above ``after``, in id order."""
        return await self._store.call(self._select, after, limit)

    async def max_id(self) -> int:
        """Returns the last notification id in the store (0 when empty)."""
        return await self._store.call(self._app.position)

    async def close(self) -> None:
        """Closes the application's connections and the worker thread."""
        await self._store.close(wait=True)

    def _select(self, after: int, limit: int) -> Sequence[Notification]:
        return self._app.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)


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

"""What the EVENTS stream no longer holds, read from the event store (PostgreSQL, the database of
record) instead.

The relay publishes every stored event once, in notification-id order, so the messages a
stream lost to its limits (age, size) between sequences ``s + 1`` and ``t - 1`` are exactly
the ``t - 1 - s`` stored events that follow the last one applied: they become deliveries with
those sequences, the payload the relay would have published (the stored bytes) and the
subject it would have used, and are applied like the stream's own messages.
"""

from __future__ import annotations

from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from contracts.subjects import SubjectError, event_subject, invalid_event_subject
from projections.delivery import Delivery
from services.application.facade import Facade
from services.common.store import BerthApplication

__all__ = ["StoreBackfill"]


class StoreBackfill:
    """Reads stored events as stream deliveries; the event store opens on first use."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._store: Facade | None = None
        self._app: BerthApplication | None = None

    async def deliveries(self, after_position: int, first_seq: int, count: int) -> list[Delivery]:
        """Returns up to ``count`` stored events after ``after_position`` as deliveries numbered
        from ``first_seq`` (fewer when the store holds fewer)."""
        store = await self._opened()
        return await store.call(self._select, after_position, first_seq, count)

    async def count_between(self, after: int, through: int) -> int:
        """Returns how many events the store holds after notification id ``after`` up to ``through`` (an
        index-only count of that range: its cost is the range's, not the history's)."""
        store = await self._opened()
        return await store.call(self._count, after, through)

    async def _opened(self) -> Facade:
        if self._app is None:
            self._store = self._store or Facade("projector-store")
            self._app = await self._store.open(BerthApplication, self._dsn)
        assert self._store is not None
        return self._store

    async def close(self) -> None:
        """Closes the event store, if it was opened."""
        if self._store is not None:
            await self._store.close(wait=True)
            self._store = self._app = None

    def _select(self, after: int, first_seq: int, limit: int) -> list[Delivery]:
        """Reads the events on the store's thread, and makes them deliveries there too: the columns a
        delivery needs, in binary (a state crosses as its bytes, where the recorder's
        ``select_notifications`` has it hex-encoded as text, and builds a ``Notification`` of every
        column by name: 4-5 us an event, against about 1.5 us)."""
        assert self._app is not None
        recorder = self._app.recorder
        query = SQL("SELECT notification_id, topic, originator_id, state FROM {} WHERE notification_id > %s"
                    " ORDER BY notification_id LIMIT %s").format(Identifier(recorder.events_table_name))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.row_factory = tuple_row  # type: ignore[assignment]  # this cursor only
            cursor.execute(query, (after, limit), binary=True)
            rows: list[tuple[int, str, str, bytes]] = cursor.fetchall()  # type: ignore[assignment]
        return [Delivery(first_seq + i, _subject(topic, originator_id, position), position, state)
                for i, (position, topic, originator_id, state) in enumerate(rows)]

    def _count(self, after: int, through: int) -> int:
        assert self._app is not None
        recorder = self._app.recorder
        query = SQL("SELECT count(*) AS n FROM {} WHERE notification_id > %s AND notification_id <= %s").format(
            Identifier(recorder.events_table_name))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, (after, through))
            row = cursor.fetchone()
        return int(row["n"]) if row is not None else 0


def _subject(topic: str, originator_id: str, position: int) -> str:
    """Returns the subject the relay published the stored event under (``subject_of`` there)."""
    try:
        return event_subject(topic, originator_id)
    except (SubjectError, IndexError):
        return invalid_event_subject(position)

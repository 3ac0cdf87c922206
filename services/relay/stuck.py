"""The relay's stuck marker: says in ``berth_relay_stuck`` which event NATS refused for good,
and forgets it once the relay got past that event.

Writing it must never make things worse: a failure to write is logged and the relay goes on
being stuck (its ERROR log line still names the event).
"""

from __future__ import annotations

import logging

import psycopg

from services.common.pg_limits import limited_dsn
from services.common.relay_status import clear_stuck, read_stuck, record_stuck
from services.relay.stream import UnpublishableError

__all__ = ["StuckMarker"]

log = logging.getLogger(__name__)


class StuckMarker:
    """Records and clears where the relay is stuck; remembers it so that a relay that is not
    stuck never touches the table."""

    def __init__(self, dsn: str) -> None:
        """Uses the event store's database at ``dsn``; ``load`` reads what a previous run left."""
        self._dsn = dsn
        self._at: int | None = None

    async def load(self) -> None:
        """Reads the marker a previous run may have left."""
        try:
            async with await self._connect() as conn:
                stuck = await read_stuck(conn)
        except psycopg.Error as exc:
            log.warning("cannot read the relay's stuck marker: %s", exc)
            return
        if stuck is not None:
            log.warning("a previous run was %s; trying again", stuck.describe())
            self._at = stuck.notification_id

    async def mark(self, error: UnpublishableError) -> None:
        """Records that the relay is stuck at ``error``'s event."""
        self._at = error.notification_id
        try:
            async with await self._connect() as conn:
                await record_stuck(conn, error.notification_id, error.aggregate_id, error.topic, error.reason)
        except psycopg.Error as exc:
            log.error("cannot record that the relay is stuck at notification %d: %s", error.notification_id, exc)

    async def passed(self, position: int) -> None:
        """Clears the marker once the relay published up to ``position``, past the stuck event."""
        if self._at is None or position < self._at:
            return
        try:
            async with await self._connect() as conn:
                await clear_stuck(conn, position)
        except psycopg.Error as exc:
            log.warning("cannot clear the relay's stuck marker: %s", exc)
            return
        log.info("relay got past notification %d, where it was stuck", self._at)
        self._at = None

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(limited_dsn(self._dsn), autocommit=True, connect_timeout=10)

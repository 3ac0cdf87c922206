"""Where the relay is stuck, if it is: one row in ``berth_relay_stuck``.

The relay writes it when NATS refuses an event for good (too large for ``max_payload``, an
invalid subject): nothing after that event may be published before it, so the relay stops
and says so here. It deletes the row once it got past that event (after a fix and a retry).
``berth doctor`` and the gateway's ``/healthz`` read it.

The table lives in the event store's database, beside ``berth_events``; it is not a read
model (rebuilding the projections leaves it alone). It is created by the first write, so a
reader treats a missing table as "not stuck".
"""

from __future__ import annotations

import datetime as dt

import msgspec
import psycopg

__all__ = ["DDL", "RelayStuck", "clear_stuck", "read_stuck", "record_stuck"]

DDL = """
CREATE TABLE IF NOT EXISTS berth_relay_stuck (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    notification_id bigint NOT NULL,
    aggregate_id text NOT NULL,
    topic text NOT NULL,
    reason text NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
)
"""

_UPSERT = """
INSERT INTO berth_relay_stuck (notification_id, aggregate_id, topic, reason) VALUES (%s, %s, %s, %s)
ON CONFLICT (singleton) DO UPDATE SET
    since = CASE WHEN berth_relay_stuck.notification_id = EXCLUDED.notification_id
                 THEN berth_relay_stuck.since ELSE EXCLUDED.since END,
    notification_id = EXCLUDED.notification_id, aggregate_id = EXCLUDED.aggregate_id,
    topic = EXCLUDED.topic, reason = EXCLUDED.reason
"""


class RelayStuck(msgspec.Struct, frozen=True, kw_only=True):
    """The event the relay cannot publish: its notification id, aggregate and type, why, and
    since when."""

    notification_id: int
    aggregate_id: str
    topic: str
    reason: str
    since: dt.datetime

    def describe(self) -> str:
        """Returns ``relay stuck at notification N (type of aggregate): reason``."""
        return (f"relay stuck at notification {self.notification_id} ({self.topic} of {self.aggregate_id}): "
                f"{self.reason}")


async def record_stuck(conn: psycopg.AsyncConnection, notification_id: int, aggregate_id: str, topic: str,
                       reason: str) -> None:
    """Records that the relay is stuck at ``notification_id`` (``since`` is kept when it already was)."""
    async with conn.transaction():
        await conn.execute(DDL)
        await conn.execute(_UPSERT, (notification_id, aggregate_id[:1000], topic[:200], reason[:2000]))


async def clear_stuck(conn: psycopg.AsyncConnection, position: int) -> None:
    """Forgets a stuck event at or below ``position`` (the relay published up to there)."""
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM berth_relay_stuck WHERE notification_id <= %s", (position,))
    except psycopg.errors.UndefinedTable:
        return


async def read_stuck(conn: psycopg.AsyncConnection) -> RelayStuck | None:
    """Returns where the relay is stuck, None when it is not (or never was)."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT notification_id, aggregate_id, topic, reason, since FROM berth_relay_stuck")
            row = await cur.fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    if row is None:
        return None
    return RelayStuck(notification_id=row[0], aggregate_id=row[1], topic=row[2], reason=row[3], since=row[4])

"""The position of the read models: the last event (notification id) and stream message applied.

The projector updates it in the same transaction as the rows, and notifies
``POSITION_CHANNEL`` with the new position on commit, so that a reader can wait until
its own write is visible (read-your-writes).
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import psycopg

__all__ = [
    "POSITION_CHANNEL",
    "PROJECTION",
    "Position",
    "read_position",
    "read_position_async",
    "wait_for_position",
]

PROJECTION = "read_models"
"""The name of the read models' row in ``projection_position``."""
POSITION_CHANNEL = "berth_projection_position"
"""The PostgreSQL channel notified with the new position after each applied batch."""

_SELECT = "SELECT position, stream_seq FROM projection_position WHERE projection = %s"


class Position(NamedTuple):
    """The last event store notification id and EVENTS stream sequence applied."""

    position: int
    stream_seq: int


def read_position(conn: psycopg.Connection) -> Position:
    """Returns the applied position (zeros before the first batch)."""
    row = conn.execute(_SELECT, (PROJECTION,)).fetchone()
    return Position(*row) if row else Position(0, 0)


async def read_position_async(conn: psycopg.AsyncConnection) -> Position:
    """Returns the applied position (zeros before the first batch), on an async connection."""
    cur = await conn.execute(_SELECT, (PROJECTION,))
    row = await cur.fetchone()
    return Position(*row) if row else Position(0, 0)


async def wait_for_position(
    conn: psycopg.AsyncConnection, position: int, timeout: float, interval: float = 0.005
) -> int:
    """Returns the applied position once it reaches ``position``; raises ``TimeoutError`` when
    ``timeout`` seconds pass first. Polls with a growing interval (at most 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        current = (await read_position_async(conn)).position
        if current >= position:
            return current
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"read models at position {current}, not {position}, after {timeout} s")
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.05)

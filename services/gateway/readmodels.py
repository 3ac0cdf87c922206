"""The read models (``projections/schema.sql``), shared by every feature: rows, the projector's position
and the read-your-writes wait; the gateway never writes them.

Read-your-writes: ``wait_for_position`` polls the projector's position until it
reaches the position a mutation returned, or fails with a clear error at a deadline;
``await_position`` is that wait for a resolver's ``afterPosition`` argument.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import psycopg
import strawberry
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.gateway.context import Info
from services.gateway.errors import READ_MODEL_BEHIND, UNAVAILABLE, GatewayError

__all__ = ["AfterPosition", "PROJECTION", "Row", "await_position", "fetch_rows", "read_position", "wait_for_position"]

PROJECTION = "read_models"
Row = dict[str, Any]
AfterPosition = Annotated[
    int | None,
    strawberry.argument(description="Wait until the read models reflect this event-store position (a mutation's `position`)."),
]


async def fetch_rows(pool: AsyncConnectionPool, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
    """Returns the rows of a query as dicts; UNAVAILABLE when the read models do not exist yet."""
    try:
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise GatewayError(UNAVAILABLE, "read models are not initialised yet: is the projector running?") from exc


async def read_position(pool: AsyncConnectionPool) -> int:
    """Returns the last event-store position the read models reflect (0 before the first event)."""
    rows = await fetch_rows(pool, "SELECT position FROM projection_position WHERE projection = %s", (PROJECTION,))
    return int(rows[0]["position"]) if rows else 0


async def wait_for_position(pool: AsyncConnectionPool, position: int | None, *, timeout: float, interval: float = 0.05) -> None:
    """Returns once the read models reached ``position``; raises ``GatewayError`` after ``timeout`` seconds."""
    if position is None or position <= 0:
        return
    deadline = time.monotonic() + timeout
    while (at := await read_position(pool)) < position:
        if time.monotonic() >= deadline:
            raise GatewayError(READ_MODEL_BEHIND, f"read model behind: at {at}, waiting for {position}")
        await asyncio.sleep(interval)


async def await_position(info: Info, after_position: int | None) -> None:
    """Returns once the read models reflect ``after_position`` (READ_MODEL_BEHIND after the wait)."""
    resources = info.context.resources
    await wait_for_position(resources.pool, after_position, timeout=resources.read_wait)

"""The gateway's access to the read models, shared by every feature: no SQL here, only the query
functions of ``projections`` (``projections.queries``, ``projections.session_refs``,
``projections.position``), with their errors as GraphQL errors; the gateway never writes them.

Read-your-writes: ``wait_for_position`` waits, on the gateway's one ``PositionWatcher``
(``projections.position``: woken by the projector's notification, never polling), until the
read models reach the position a mutation returned, or fails at the gateway's read wait with
READ_MODEL_BEHIND; ``await_position`` is that wait for a resolver's ``afterPosition`` argument.

Read-others'-writes: a lookup that finds nothing may only lag a change made elsewhere (another
user's invitation or share, another terminal's command) that no ``afterPosition`` names.
``read_settled`` then waits for the read models to reach the event store's position at that
moment (every change committed before the request is below it) and reads again, so a thing
that exists is never reported missing: it is found, or the wait fails with READ_MODEL_BEHIND.
``read_caught_up`` is that wait and second read alone, for a caller that already read once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import psycopg
import strawberry
from psycopg_pool import AsyncConnectionPool

from projections.position import PositionTimeoutError, read_position_async
from projections.queries import ReadModelsMissingError
from services.gateway.context import Info
from services.gateway.errors import READ_MODEL_BEHIND, UNAVAILABLE, GatewayError
from services.gateway.resources import Resources

__all__ = ["AfterPosition", "await_position", "read", "read_caught_up", "read_position", "read_settled",
           "wait_for_position"]

T = TypeVar("T")
AfterPosition = Annotated[
    int | None,
    strawberry.argument(description="Wait until the read models reflect this event-store position (a mutation's `position`)."),
]
_MISSING = "read models are not initialised yet: is the projector running?"


async def read(query: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Returns ``await query(*args, **kwargs)`` (a query function of ``projections``); UNAVAILABLE
    when the read models do not exist yet."""
    try:
        return await query(*args, **kwargs)
    except ReadModelsMissingError as exc:
        raise GatewayError(UNAVAILABLE, _MISSING) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise GatewayError(UNAVAILABLE, _MISSING) from exc


async def read_position(pool: AsyncConnectionPool) -> int:
    """Returns the last event-store position the read models reflect (0 before the first event)."""

    async def position() -> int:
        async with pool.connection() as conn:
            return (await read_position_async(conn)).position

    return await read(position)


async def wait_for_position(resources: Resources, position: int | None) -> None:
    """Returns once the read models reached ``position``; READ_MODEL_BEHIND after the gateway's read wait."""
    if position is None or position <= 0:
        return
    try:
        await resources.positions.wait(position, resources.read_wait)
    except PositionTimeoutError as exc:
        raise GatewayError(READ_MODEL_BEHIND, f"read model behind: at {exc.current}, waiting for {position}") from exc


async def await_position(info: Info, after_position: int | None) -> None:
    """Returns once the read models reflect ``after_position`` (READ_MODEL_BEHIND after the wait)."""
    await wait_for_position(info.context.resources, after_position)


async def read_settled(resources: Resources, query: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Returns ``read(query, ...)``; when that finds nothing (None or empty), ``read_caught_up``."""
    found = await read(query, *args, **kwargs)
    if found:
        return found
    return await read_caught_up(resources, query, *args, **kwargs)


async def read_caught_up(resources: Resources, query: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Returns ``read(query, ...)`` once the read models reached the event store's current position
    (READ_MODEL_BEHIND after the wait)."""
    await resources.start()
    stored = await resources.call(resources.vfolders.position)
    await wait_for_position(resources, stored)
    return await read(query, *args, **kwargs)

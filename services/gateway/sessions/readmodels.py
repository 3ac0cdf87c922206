"""SQL reads of the sessions' read models (sessions, kernels, agents, the event log) and session cursors."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from projections import session_refs
from services.gateway.errors import BAD_INPUT, UNAVAILABLE, GatewayError
from services.gateway.readmodels import Row, fetch_rows

__all__ = [
    "decode_cursor",
    "encode_cursor",
    "get_session",
    "kernels_of",
    "list_agents",
    "list_events",
    "list_sessions",
    "match_sessions",
    "pending_of",
]


def encode_cursor(created_at: dt.datetime, session_id: str) -> str:
    """Returns the opaque cursor of a session row: its (created_at, session_id) sort key."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{session_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Returns the sort key inside a cursor; raises ``GatewayError`` (BAD_INPUT) when it is not one."""
    try:
        created_at, session_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        when = dt.datetime.fromisoformat(created_at)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GatewayError(BAD_INPUT, f"invalid cursor {cursor!r}: pass pageInfo.endCursor of a previous page") from exc
    if when.tzinfo is None or not session_id:
        raise GatewayError(BAD_INPUT, f"invalid cursor {cursor!r}: pass pageInfo.endCursor of a previous page")
    return when, session_id


async def list_sessions(
    pool: AsyncConnectionPool, *, owner: str | None, statuses: Sequence[str] | None,
    first: int, after: tuple[dt.datetime, str] | None, domain: str | None = None,
) -> list[Row]:
    """Returns up to ``first + 1`` sessions in (created_at, session_id) order after the cursor key,
    only ``owner``'s and only ``domain``'s when given."""
    where, params = [], []
    for clause, value in (("owner = %s", owner), ("domain = %s", domain)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if statuses:
        where.append("status = ANY(%s)")
        params.append(list(statuses))
    if after is not None:
        where.append("(created_at, session_id) > (%s, %s)")
        params.extend(after)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return await fetch_rows(
        pool, f"SELECT * FROM sessions {clause} ORDER BY created_at, session_id LIMIT %s", (*params, first + 1)
    )


async def get_session(pool: AsyncConnectionPool, session_id: str) -> Row | None:
    """Returns one session row, None when the read model does not have it."""
    rows = await fetch_rows(pool, "SELECT * FROM sessions WHERE session_id = %s", (session_id,))
    return rows[0] if rows else None


async def match_sessions(pool: AsyncConnectionPool, ref: str, *, owner: str | None, domain: str | None) -> list[Row]:
    """Returns the session rows a reference may mean (``projections.session_refs.match_sessions``),
    only ``owner``'s and ``domain``'s when given; UNAVAILABLE when the read models do not exist yet."""
    try:
        async with pool.connection() as conn:
            return await session_refs.match_sessions(conn, ref, owner=owner, domain=domain)
    except psycopg.errors.UndefinedTable as exc:
        raise GatewayError(UNAVAILABLE, "read models are not initialised yet: is the projector running?") from exc


async def kernels_of(pool: AsyncConnectionPool, session_ids: Sequence[str]) -> dict[str, list[Row]]:
    """Returns the kernel rows of the given sessions, by session id, in cluster order."""
    by_session: dict[str, list[Row]] = {sid: [] for sid in session_ids}
    if not session_ids:
        return by_session
    rows = await fetch_rows(
        pool, "SELECT * FROM kernels WHERE session_id = ANY(%s) ORDER BY session_id, cluster_idx, kernel_id",
        (list(session_ids),),
    )
    for row in rows:
        by_session[row["session_id"]].append(row)
    return by_session


async def list_agents(pool: AsyncConnectionPool) -> list[Row]:
    """Returns every agent row, by id."""
    return await fetch_rows(pool, "SELECT * FROM agents ORDER BY agent_id")


async def list_events(
    pool: AsyncConnectionPool, *, owner: str | None, aggregate_id: str | None, since: dt.datetime | None,
    until: dt.datetime | None, after: int | None, first: int, domain: str | None = None,
) -> list[Row]:
    """Returns up to ``first`` event-log rows in position order; with ``owner`` (or ``domain``), only
    the events of its sessions (of the domain's sessions)."""
    where, params = [], []
    for clause, value in (("aggregate_id IN (SELECT session_id FROM sessions WHERE owner = %s)", owner),
                          ("aggregate_id IN (SELECT session_id FROM sessions WHERE domain = %s)", domain)):
        if value is not None:
            where.append(clause)
            params.append(value)
    for clause, value in (("aggregate_id = %s", aggregate_id), ("occurred_at >= %s", since),
                          ("occurred_at < %s", until), ("position > %s", after)):
        if value is not None:
            where.append(clause)
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return await fetch_rows(pool, f"SELECT * FROM event_log {clause} ORDER BY position LIMIT %s", (*params, first))


async def pending_of(pool: AsyncConnectionPool, owner: str) -> tuple[int, list[dict[str, str]]]:
    """Returns how many PENDING sessions ``owner`` has and their requested slots (JSON objects)."""
    rows = await fetch_rows(pool, "SELECT requested_slots FROM sessions WHERE owner = %s AND status = 'PENDING'", (owner,))
    return len(rows), [row["requested_slots"] for row in rows]

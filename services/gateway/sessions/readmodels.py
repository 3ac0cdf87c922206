"""The sessions feature's reads, no SQL: the query functions of ``projections.queries.sessions``
and ``projections.session_refs`` (a missing read model is UNAVAILABLE), and session cursors."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from projections import session_refs
from projections.queries import sessions as q
from projections.queries.rows import AgentRow, EventLogRow, KernelRow, SessionRow
from services.gateway.errors import BAD_INPUT, GatewayError
from services.gateway.limits import CURSOR, checked_value
from services.gateway.readmodels import read

__all__ = [
    "decode_cursor",
    "encode_cursor",
    "get_session",
    "kernels_of",
    "list_agents",
    "list_events",
    "list_sessions",
    "lost_agents",
    "match_sessions",
    "pending_of",
]


def encode_cursor(created_at: dt.datetime, session_id: str) -> str:
    """Returns the opaque cursor of a session row: its (created_at, session_id) sort key."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{session_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Returns the sort key inside a cursor; raises ``GatewayError`` (BAD_INPUT) when it is not one."""
    checked_value(CURSOR, cursor)
    try:
        created_at, session_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        when = dt.datetime.fromisoformat(created_at)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GatewayError(BAD_INPUT, f"invalid cursor {cursor!r}: pass pageInfo.endCursor of a previous page") from exc
    if when.tzinfo is None or not session_id or "\x00" in session_id:
        raise GatewayError(BAD_INPUT, f"invalid cursor {cursor!r}: pass pageInfo.endCursor of a previous page")
    return when, session_id


async def list_sessions(
    pool: AsyncConnectionPool, *, owner: str | None, statuses: Sequence[str] | None,
    first: int, after: tuple[dt.datetime, str] | None, domain: str | None = None, newest_first: bool = False,
    hide_superadmins: bool = False,
) -> list[SessionRow]:
    """Returns up to ``first + 1`` sessions in (created_at, session_id) order (descending with
    ``newest_first``) after the cursor key, only ``owner``'s and only ``domain``'s when given, none of
    a superadmin's with ``hide_superadmins``."""
    return await read(q.list_sessions, pool, owner=owner, statuses=statuses, first=first, after=after, domain=domain,
                      newest_first=newest_first, hide_superadmins=hide_superadmins)


async def lost_agents(pool: AsyncConnectionPool, agent_ids: Sequence[str]) -> dict[str, dt.datetime]:
    """Returns, of ``agent_ids``, the LOST agents and when each was lost."""
    return await read(q.lost_agents, pool, agent_ids)


async def get_session(pool: AsyncConnectionPool, session_id: str) -> SessionRow | None:
    """Returns one session, None when the read model does not have it."""
    return await read(q.get_session, pool, session_id)


async def match_sessions(pool: AsyncConnectionPool, ref: str, *, owner: str | None, domain: str | None,
                         hide_superadmins: bool = False) -> list[dict[str, Any]]:
    """Returns the session rows a reference may mean (``projections.session_refs.match_sessions``),
    only ``owner``'s and ``domain``'s when given, none of a superadmin's with ``hide_superadmins``;
    UNAVAILABLE when the read models do not exist yet."""

    async def match() -> list[dict[str, Any]]:
        async with pool.connection() as conn:
            return await session_refs.match_sessions(conn, ref, owner=owner, domain=domain,
                                                     hide_superadmins=hide_superadmins)

    return await read(match)


async def kernels_of(pool: AsyncConnectionPool, session_ids: Sequence[str]) -> dict[str, list[KernelRow]]:
    """Returns the kernels of the given sessions, by session id, in cluster order."""
    return await read(q.kernels_of, pool, session_ids)


async def list_agents(pool: AsyncConnectionPool, *, user: tuple[str, str] | None = None) -> list[AgentRow]:
    """Returns every agent, by id; with ``user`` (domain, name) those of the resource groups it may use."""
    return await read(q.list_agents, pool, user=user)


async def list_events(
    pool: AsyncConnectionPool, *, owner: str | None, aggregate_id: str | None, since: dt.datetime | None,
    until: dt.datetime | None, after: int | None, first: int, domain: str | None = None,
    before: int | None = None, newest_first: bool = False, hide_superadmins: bool = False,
) -> list[EventLogRow]:
    """Returns up to ``first`` events of the log in position order (descending with ``newest_first``)
    between ``after`` and ``before``; with ``owner`` (or ``domain``), only the events of its sessions
    (of the domain's sessions), none of a superadmin's sessions with ``hide_superadmins``."""
    return await read(q.list_events, pool, owner=owner, aggregate_id=aggregate_id, since=since, until=until,
                      after=after, first=first, domain=domain, before=before, newest_first=newest_first,
                      hide_superadmins=hide_superadmins)


async def pending_of(pool: AsyncConnectionPool, owner: str) -> tuple[int, list[dict[str, Any]]]:
    """Returns how many PENDING sessions ``owner`` has and their requested slots (JSON objects)."""
    return await read(q.pending_of, pool, owner)

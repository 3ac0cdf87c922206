"""Reads of the sessions' read models: ``sessions``, ``kernels``, ``agents`` and ``event_log``.

Pages of sessions are in (created_at, session_id) order after a cursor key, served by the
indexes ``sessions_created``, ``sessions_owner_created`` and ``sessions_domain_created``;
kernels by ``kernels_session``; the event log by its primary key, ``event_log_aggregate``
and ``event_log_time``. Looking sessions up by reference is ``projections.session_refs``.

A domain admin sees no superadmin's session (``hide_superadmins``): the owner's keypair role is
looked up by ``keypairs_view``'s primary key for each row the other conditions keep
(``OWNER_ROLE``), so a page costs what it did plus one index probe per row it reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from contracts.status import LIVE_SESSION_STATUSES
from contracts.tenancy import Role
from projections.queries.fetch import columns, fetch_all
from projections.queries.rows import AgentRow, EventLogRow, KernelRow, SessionRow
from projections.queries.tenancy import VISIBLE_TO_USER

__all__ = [
    "HIDDEN_ROLE",
    "OWNER_ROLE",
    "count_live",
    "get_session",
    "kernels_of",
    "list_agents",
    "list_events",
    "list_query",
    "list_sessions",
    "lost_agents",
    "pending_of",
    "session_row",
]

_SESSION = columns(SessionRow)
_KERNEL = columns(KernelRow)

OWNER_ROLE = "(SELECT k.role FROM keypairs_view k WHERE k.access_key = sessions.owner)"
"""The role of a ``sessions`` row's owner (its keypair's; NULL when unknown): a scalar subquery, one
probe of ``keypairs_view``'s primary key per row, which the planner never turns into a scan of every
keypair (an anti-join on the rare superadmin role would be)."""
HIDDEN_ROLE = Role.SUPERADMIN.value
"""The owners' role whose sessions ``hide_superadmins`` hides: the parameter of ``OWNER_ROLE IS DISTINCT
FROM %s``."""


class _RequestedSlots(msgspec.Struct, frozen=True, kw_only=True):
    requested_slots: dict[str, Any]


def session_row(row: Mapping[str, Any]) -> SessionRow:
    """Returns the ``SessionRow`` of a ``sessions`` row read as a mapping (``session_refs`` gives those)."""
    return SessionRow(**{name: row[name] for name in SessionRow.__struct_fields__})


def _hidden(hide_superadmins: bool) -> str | None:
    """Returns the parameter of the ``OWNER_ROLE`` condition, None when no session is hidden."""
    return HIDDEN_ROLE if hide_superadmins else None


def _where(clauses: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """Returns the WHERE clause of the conditions whose value is not None, and their parameters (a
    tuple value is the parameters of a condition that has several)."""
    kept = [(clause, value) for clause, value in clauses if value is not None]
    condition = f"WHERE {' AND '.join(clause for clause, _ in kept)}" if kept else ""
    return condition, [param for _, value in kept for param in (value if isinstance(value, tuple) else (value,))]


async def list_sessions(
    pool: AsyncConnectionPool, *, owner: str | None, statuses: Sequence[str] | None,
    first: int, after: tuple[dt.datetime, str] | None, domain: str | None = None, newest_first: bool = False,
    hide_superadmins: bool = False,
) -> list[SessionRow]:
    """Returns up to ``first + 1`` sessions in (created_at, session_id) order (descending with
    ``newest_first``) after the cursor key ``after``, only ``owner``'s, ``domain``'s and those in
    ``statuses`` when given; with ``hide_superadmins``, none of a superadmin's."""
    query, params = list_query(owner=owner, statuses=statuses, first=first, after=after, domain=domain,
                               newest_first=newest_first, hide_superadmins=hide_superadmins)
    return await fetch_all(pool, SessionRow, query, params)


def list_query(
    *, owner: str | None, statuses: Sequence[str] | None, first: int, after: tuple[dt.datetime, str] | None,
    domain: str | None = None, newest_first: bool = False, hide_superadmins: bool = False,
) -> tuple[str, list[Any]]:
    """Returns the SQL and parameters of ``list_sessions`` (for it, and to ``EXPLAIN``)."""
    clauses: list[tuple[str, Any]] = [("owner = %s", owner), ("domain = %s", domain),
                                      ("status = ANY(%s)", list(statuses) if statuses else None),
                                      (f"{OWNER_ROLE} IS DISTINCT FROM %s", _hidden(hide_superadmins))]
    condition, params = _where(clauses)
    beyond, order = ("<", "DESC") if newest_first else (">", "ASC")
    if after is not None:
        condition = f"{condition} AND" if condition else "WHERE"
        condition += f" (created_at, session_id) {beyond} (%s, %s)"
        params.extend(after)
    query = f"SELECT {_SESSION} FROM sessions {condition} ORDER BY created_at {order}, session_id {order} LIMIT %s"
    return query, [*params, first + 1]


async def get_session(pool: AsyncConnectionPool, session_id: str) -> SessionRow | None:
    """Returns one session, None when the read model does not have it."""
    rows = await fetch_all(pool, SessionRow, f"SELECT {_SESSION} FROM sessions WHERE session_id = %s", (session_id,))
    return rows[0] if rows else None


async def kernels_of(pool: AsyncConnectionPool, session_ids: Sequence[str]) -> dict[str, list[KernelRow]]:
    """Returns the kernels of the given sessions, by session id, in cluster order."""
    by_session: dict[str, list[KernelRow]] = {sid: [] for sid in session_ids}
    if not session_ids:
        return by_session
    rows = await fetch_all(
        pool, KernelRow,
        f"SELECT {_KERNEL} FROM kernels WHERE session_id = ANY(%s) ORDER BY session_id, cluster_idx, kernel_id",
        (list(session_ids),),
    )
    for row in rows:
        by_session[row.session_id].append(row)
    return by_session


async def list_agents(pool: AsyncConnectionPool, *, user: tuple[str, str] | None = None) -> list[AgentRow]:
    """Returns every agent, by id; with ``user`` (its domain and name), only the agents of the resource
    groups that user may use (public, or visible to its domain, one of its projects or keypairs)."""
    select = f"SELECT {columns(AgentRow)} FROM agents"
    if user is None:
        return await fetch_all(pool, AgentRow, f"{select} ORDER BY agent_id")
    domain, name = user
    return await fetch_all(
        pool, AgentRow,
        f"{select} WHERE resource_group IN (SELECT name FROM resource_groups WHERE {VISIBLE_TO_USER}) ORDER BY agent_id",
        [domain, name, name])


async def list_events(
    pool: AsyncConnectionPool, *, owner: str | None, aggregate_id: str | None, since: dt.datetime | None,
    until: dt.datetime | None, after: int | None, first: int, domain: str | None = None,
    before: int | None = None, newest_first: bool = False, hide_superadmins: bool = False,
) -> list[EventLogRow]:
    """Returns up to ``first`` events of the log in position order (descending with ``newest_first``)
    between the positions ``after`` and ``before``; with ``owner`` (or ``domain``), only the events of
    its sessions (of the domain's sessions); with ``hide_superadmins``, only those of sessions and none
    of a superadmin's."""
    sessions, of_sessions = _where([("owner = %s", owner), ("domain = %s", domain),
                                    (f"{OWNER_ROLE} IS DISTINCT FROM %s", _hidden(hide_superadmins))])
    condition, params = _where([
        (f"aggregate_id IN (SELECT session_id FROM sessions {sessions})", tuple(of_sessions) if sessions else None),
        ("aggregate_id = %s", aggregate_id), ("occurred_at >= %s", since), ("occurred_at < %s", until),
        ("position > %s", after), ("position < %s", before),
    ])
    order = "DESC" if newest_first else "ASC"
    return await fetch_all(
        pool, EventLogRow,
        f"SELECT {columns(EventLogRow)} FROM event_log {condition} ORDER BY position {order} LIMIT %s",
        (*params, first),
    )


async def pending_of(pool: AsyncConnectionPool, owner: str) -> tuple[int, list[dict[str, Any]]]:
    """Returns how many PENDING sessions ``owner`` has and their requested slots (JSON objects)."""
    rows = await fetch_all(
        pool, _RequestedSlots, "SELECT requested_slots FROM sessions WHERE owner = %s AND status = 'PENDING'", (owner,)
    )
    return len(rows), [row.requested_slots for row in rows]


class _StatusCount(msgspec.Struct, frozen=True):
    status: str
    n: int


async def count_live(pool: AsyncConnectionPool) -> dict[str, int]:
    """Returns how many sessions not ended there are in each status that has any (index ``sessions_status``)."""
    rows = await fetch_all(pool, _StatusCount, "SELECT status, count(*) AS n FROM sessions WHERE status = ANY(%s)"
                           " GROUP BY status", (LIVE_SESSION_STATUSES,))
    return {row.status: row.n for row in rows}


class _LostAgent(msgspec.Struct, frozen=True):
    agent_id: str
    updated_at: dt.datetime


async def lost_agents(pool: AsyncConnectionPool, agent_ids: Sequence[str]) -> dict[str, dt.datetime]:
    """Returns, of ``agent_ids``, those LOST, each with the time of its last event (its ``agent.lost``: the
    kernels of a lost agent are released only when its grace ends); by primary key."""
    if not agent_ids:
        return {}
    rows = await fetch_all(pool, _LostAgent, "SELECT agent_id, updated_at FROM agents WHERE agent_id = ANY(%s)"
                           " AND status = 'LOST'", (list(agent_ids),))
    return {row.agent_id: row.updated_at for row in rows}

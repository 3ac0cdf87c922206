"""Finding sessions as users name them: by id, by unique id prefix, by name.

The one query behind every session reference of the API (``match_sessions``). Each branch
is served by an index of ``schema.sql``: the primary key (exact id),
``sessions_name_owner`` (name, then owner) and ``sessions_id_pattern`` (``session_id
text_pattern_ops``, so ``LIKE 'abcd%'`` is an index range whatever the collation). Hiding a
superadmin's sessions from a domain admin (``hide_superadmins``) probes ``keypairs_view``'s
primary key once per candidate (``projections.queries.sessions.OWNER_ROLE``). The caller picks
among the candidates (``services.gateway.sessions.refs``).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from projections.queries.sessions import HIDDEN_ROLE, OWNER_ROLE

__all__ = ["ENDED", "MAX_CANDIDATES", "MIN_PREFIX", "match_query", "match_sessions"]

MIN_PREFIX = 4
"""The shortest id prefix that addresses a session."""
MAX_CANDIDATES = 10
"""Rows returned per way of matching (one more shows that there are more)."""
ENDED = ("TERMINATED", "CANCELLED", "ERROR")
"""Statuses of sessions that no longer hold their name."""


def _like_prefix(ref: str) -> str:
    """Returns the LIKE pattern of the strings starting with ``ref`` (its wildcards escaped)."""
    return ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def match_query(ref: str, *, owner: str | None = None, domain: str | None = None, hide_superadmins: bool = False,
                limit: int = MAX_CANDIDATES) -> tuple[str, dict[str, Any]]:
    """Returns the SQL and parameters of ``match_sessions`` (for it, and to ``EXPLAIN``)."""
    scope, params = "", {"ref": ref, "ended": list(ENDED), "pattern": _like_prefix(ref), "limit": limit + 1}
    if owner is not None:
        scope += " AND owner = %(owner)s"
        params["owner"] = owner
    if domain is not None:
        scope += " AND domain = %(domain)s"
        params["domain"] = domain
    if hide_superadmins:
        scope += f" AND {OWNER_ROLE} IS DISTINCT FROM %(hidden_role)s"
        params["hidden_role"] = HIDDEN_ROLE
    branches = [
        ("id", "session_id = %(ref)s"),
        ("name", "name = %(ref)s AND status <> ALL(%(ended)s)"),
        ("ended name", "name = %(ref)s AND status = ANY(%(ended)s)"),
    ]
    if len(ref) >= MIN_PREFIX:
        branches.append(("prefix", "session_id LIKE %(pattern)s AND session_id <> %(ref)s"))
    query = " UNION ALL ".join(
        f"(SELECT *, '{matched}' AS matched FROM sessions WHERE {condition}{scope}"
        " ORDER BY created_at DESC, session_id LIMIT %(limit)s)"
        for matched, condition in branches
    )
    return query, params


async def match_sessions(
    conn: psycopg.AsyncConnection[Any], ref: str, *, owner: str | None = None, domain: str | None = None,
    hide_superadmins: bool = False, limit: int = MAX_CANDIDATES,
) -> list[dict[str, Any]]:
    """Returns the sessions rows ``ref`` may mean, only ``owner``'s and ``domain``'s when given and
    none of a superadmin's with ``hide_superadmins``, each with ``matched``: ``id`` (exact id),
    ``name`` (a live session of that name), ``prefix`` (an id starting with ``ref``, any status, when
    ``ref`` has ``MIN_PREFIX`` characters or more) or ``ended name`` (an ended session of that name);
    up to ``limit + 1`` rows of each, newest first."""
    query, params = match_query(ref, owner=owner, domain=domain, hide_superadmins=hide_superadmins, limit=limit)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, params)
    return await cur.fetchall()

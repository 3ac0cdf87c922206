"""Reads for a session's mounts at enqueue: the folders that mount by themselves (a user's ready
folders named ``.something``, Backend.AI's automount), on the ``vfolders`` read model
(index ``vfolders_owner``); and the live sessions that mount a folder (``sessions_mounting``, before
a trash or purge), on the ``sessions`` read model (index ``sessions_status``). The gateway reads
their current state from the store afterwards."""

from __future__ import annotations

import json

import msgspec
from psycopg_pool import AsyncConnectionPool

from contracts.mounts import MAX_MOUNTS
from contracts.status import LIVE_SESSION_STATUSES
from projections.queries.fetch import columns, fetch_all

__all__ = ["MAX_MOUNTING", "MountCandidateRow", "SessionIdRow", "automatic_folders", "sessions_mounting"]

MAX_MOUNTING = 100
"""The most live sessions ``sessions_mounting`` returns (one is enough to refuse)."""


class MountCandidateRow(msgspec.Struct, frozen=True, kw_only=True):
    """A folder that may be mounted: its id, name and quota scope."""

    folder_id: str
    name: str
    quota_scope: str


async def automatic_folders(pool: AsyncConnectionPool, user: str) -> list[MountCandidateRow]:
    """Returns ``user``'s ready folders whose name starts with ``.``, by name; at most one more than
    a session may mount (so that too many is seen, and refused, rather than cut)."""
    query = (f"SELECT {columns(MountCandidateRow)} FROM vfolders WHERE owner_kind = 'user' AND owner = %s"
             " AND status = 'ready' AND starts_with(name, '.') ORDER BY name, folder_id LIMIT %s")
    return await fetch_all(pool, MountCandidateRow, query, (user, MAX_MOUNTS + 1))


class SessionIdRow(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str


async def sessions_mounting(pool: AsyncConnectionPool, folder_id: str) -> list[str]:
    """Returns the ids of the live (not ended) sessions whose mounts include ``folder_id``, oldest
    first, at most ``MAX_MOUNTING``."""
    query = ("SELECT session_id FROM sessions WHERE status = ANY(%s) AND mounts @> %s::jsonb"
             " ORDER BY created_at, session_id LIMIT %s")
    params = (LIVE_SESSION_STATUSES, json.dumps([{"folder_id": folder_id}]), MAX_MOUNTING)
    rows = await fetch_all(pool, SessionIdRow, query, params)
    return [row.session_id for row in rows]

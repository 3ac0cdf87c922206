"""Reads for a session's mounts at enqueue: the folders that mount by themselves (a user's ready
folders named ``.something``, Backend.AI's automount), on the ``vfolders`` read model
(index ``vfolders_owner``). The gateway reads their current state from the store afterwards."""

from __future__ import annotations

import msgspec
from psycopg_pool import AsyncConnectionPool

from contracts.mounts import MAX_MOUNTS
from projections.queries.fetch import columns, fetch_all

__all__ = ["MountCandidateRow", "automatic_folders"]


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

"""Reads of the folder read models (``projections/vfolders.py``) within a ``FolderScope``: the
folders a reader may see are its own user folders, those shared with it, its projects' folders,
and, for an admin, every folder of its domain but a superadmin's personal folders (no admin reaches
a superadmin's: ``domain.vfolder.access.toward``); a superadmin sees all. Each row carries its
owner's role (``owner_role``: ``users`` joined by its primary key) for the reader's access rules.

Served by ``vfolders_owner``, ``vfolders_domain``, ``vfolders_scope``, ``vfolder_shares_user``
and ``vfolder_invitations_invitee``; every list is bounded by ``limit``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from contracts.tenancy import Role
from projections.queries.fetch import columns, fetch_all
from projections.queries.rows import StorageUsageRow, VFolderInvitationRow, VFolderRow, VFolderShareRow

__all__ = [
    "FolderScope",
    "MAX_FOLDERS",
    "folder",
    "folder_shares",
    "folders_named",
    "invitation",
    "invitations_for",
    "list_folders",
    "owned_count",
    "scope_usage",
    "storage_usage",
]

MAX_FOLDERS = 1000
"""The most folders one list returns."""

_LIVE = "f.status NOT IN ('purging', 'purged')"
_FOLDER_COLUMNS = ", ".join(f"f.{name}" for name in VFolderRow.__struct_fields__
                            if name not in ("shared_permission", "owner_role"))
_SELECT = f"""
SELECT {_FOLDER_COLUMNS}, s.permission AS shared_permission, o.role AS owner_role
  FROM vfolders f
  LEFT JOIN vfolder_shares s ON s.folder_id = f.folder_id AND s.user_name = %(user)s
  LEFT JOIN users o ON f.owner_kind = 'user' AND o.name = f.owner
"""
_VISIBLE = f"""(%(everything)s
        OR (f.owner_kind = 'user' AND f.owner = %(user)s)
        OR s.user_name IS NOT NULL
        OR (f.owner_kind = 'project' AND f.owner = ANY(%(projects)s) AND f.domain = %(own_domain)s)
        OR (f.domain = %(managed)s AND o.role IS DISTINCT FROM '{Role.SUPERADMIN.value}'))"""


class FolderScope(msgspec.Struct, frozen=True, kw_only=True):
    """Who reads: a user, its domain and projects; ``managed`` the domain it administers (None:
    none), whose superadmins' personal folders it does not see unless shared with it; ``everything``
    for a superadmin."""

    user: str
    domain: str
    projects: list[str] = []
    managed: str | None = None
    everything: bool = False

    def params(self) -> dict[str, Any]:
        return {"user": self.user, "projects": list(self.projects), "own_domain": self.domain,
                "managed": self.managed, "everything": self.everything}


async def list_folders(pool: AsyncConnectionPool, scope: FolderScope, *, status: str | None = None,
                       include_purged: bool = False, owner_kind: str | None = None,
                       limit: int = MAX_FOLDERS) -> list[VFolderRow]:
    """Returns the folders the reader sees, by name then id: live ones (trashed included) unless
    ``include_purged``; only those of ``status`` / ``owner_kind`` when given."""
    where = [_VISIBLE] + ([] if include_purged else [_LIVE])
    params = scope.params()
    if status is not None:
        where.append("f.status = %(status)s")
        params["status"] = status
    if owner_kind is not None:
        where.append("f.owner_kind = %(owner_kind)s")
        params["owner_kind"] = owner_kind
    params["limit"] = max(0, min(limit, MAX_FOLDERS))
    query = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY f.name, f.folder_id LIMIT %(limit)s"
    return await fetch_all(pool, VFolderRow, query, params)


async def folder(pool: AsyncConnectionPool, scope: FolderScope, folder_id: str) -> VFolderRow | None:
    """Returns one folder the reader sees (purged ones too), None otherwise."""
    rows = await fetch_all(pool, VFolderRow, f"{_SELECT} WHERE {_VISIBLE} AND f.folder_id = %(id)s",
                           {**scope.params(), "id": folder_id})
    return rows[0] if rows else None


async def folders_named(pool: AsyncConnectionPool, scope: FolderScope, name: str) -> list[VFolderRow]:
    """Returns the live folders the reader sees with ``name`` (its own first, then by id)."""
    query = (f"{_SELECT} WHERE {_VISIBLE} AND {_LIVE} AND f.name = %(name)s"
             " ORDER BY (f.owner_kind = 'user' AND f.owner = %(user)s) DESC, f.folder_id LIMIT 20")
    return await fetch_all(pool, VFolderRow, query, {**scope.params(), "name": name})


async def folder_shares(pool: AsyncConnectionPool, folder_id: str) -> list[VFolderShareRow]:
    """Returns who the folder is shared with, by user name."""
    return await fetch_all(pool, VFolderShareRow, f"SELECT {columns(VFolderShareRow)} FROM vfolder_shares"
                           " WHERE folder_id = %s ORDER BY user_name LIMIT %s", (folder_id, MAX_FOLDERS))


async def invitations_for(pool: AsyncConnectionPool, invitee: str, *, state: str | None = "pending",
                          limit: int = MAX_FOLDERS) -> list[VFolderInvitationRow]:
    """Returns the invitations of ``invitee`` (pending ones by default), oldest first."""
    condition = "" if state is None else " AND i.state = %(state)s"
    query = (f"SELECT i.invitation_id, i.folder_id, f.name AS folder_name, i.inviter, i.invitee, i.permission,"
             f" i.state, i.created_at, i.updated_at FROM vfolder_invitations i JOIN vfolders f USING (folder_id)"
             f" WHERE i.invitee = %(invitee)s{condition} AND f.status NOT IN ('purging', 'purged')"
             f" ORDER BY i.created_at, i.invitation_id LIMIT %(limit)s")
    return await fetch_all(pool, VFolderInvitationRow, query,
                           {"invitee": invitee, "state": state, "limit": max(0, min(limit, MAX_FOLDERS))})


async def invitation(pool: AsyncConnectionPool, invitee: str, invitation_id: str) -> VFolderInvitationRow | None:
    """Returns one invitation of ``invitee`` (in any state), None when there is none."""
    query = ("SELECT i.invitation_id, i.folder_id, f.name AS folder_name, i.inviter, i.invitee, i.permission,"
             " i.state, i.created_at, i.updated_at FROM vfolder_invitations i JOIN vfolders f USING (folder_id)"
             " WHERE i.invitation_id = %s AND i.invitee = %s")
    rows = await fetch_all(pool, VFolderInvitationRow, query, (invitation_id, invitee))
    return rows[0] if rows else None


class _Count(msgspec.Struct, frozen=True):
    n: int


async def owned_count(pool: AsyncConnectionPool, user: str) -> int:
    """Returns how many live folders (trashed included) ``user`` owns."""
    rows = await fetch_all(pool, _Count, "SELECT count(*) AS n FROM vfolders f WHERE f.owner_kind = 'user'"
                           f" AND f.owner = %s AND {_LIVE}", (user,))
    return rows[0].n


_LIMIT = """
CASE WHEN u.scope LIKE 'project:%%' THEN COALESCE((SELECT l.limit_bytes FROM vfolder_scope_limits l
                                                    WHERE l.quota_scope = u.scope), 0)
     ELSE COALESCE((SELECT CASE WHEN bool_or(COALESCE((p.limits->>'max_quota_scope_size')::bigint, 0) = 0) THEN 0
                                ELSE max((p.limits->>'max_quota_scope_size')::bigint) END
                      FROM keypairs_view k JOIN resource_policies p ON p.name = k.resource_policy
                     WHERE k.user_name = substr(u.scope, 6) AND k.is_active), 0) END"""
"""A scope's limit: a project's ``vfolder_scope_limits``; a user's, the most generous policy of
its active keypairs (0, no limit, wins)."""


async def storage_usage(pool: AsyncConnectionPool, scopes: list[str]) -> list[StorageUsageRow]:
    """Returns, per quota scope of ``scopes`` (``user:<name>`` / ``project:<name>``), the bytes and
    files of its live folders, their count and the scope's limit, by scope."""
    query = f"""
SELECT u.scope AS quota_scope, count(f.folder_id)::int AS folders,
       COALESCE(sum(f.usage_bytes + f.uploaded_bytes), 0)::bigint AS usage_bytes, COALESCE(sum(f.usage_files), 0)::bigint AS usage_files,
       {_LIMIT} AS limit_bytes
  FROM unnest(%(scopes)s::text[]) AS u(scope)
  LEFT JOIN vfolders f ON f.quota_scope = u.scope AND {_LIVE}
 GROUP BY u.scope ORDER BY u.scope"""
    return await fetch_all(pool, StorageUsageRow, query, {"scopes": sorted(set(scopes))[:MAX_FOLDERS]})


async def scope_usage(pool: AsyncConnectionPool, scope: str) -> StorageUsageRow:
    """Returns one quota scope's usage and limit."""
    (row,) = await storage_usage(pool, [scope])
    return row

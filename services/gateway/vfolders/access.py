"""Who is acting on folders and which folder an argument means; the plumbing the folder
resolvers share.

The actor (``domain.vfolder.access.Actor``) comes from the event store (keypair, user, policy),
so a just-changed membership or policy applies at once. A folder argument is its id
(``vfolder_<32 hex>``) or a name: the caller's own user folder of that name first (its claim,
never stale), else the live folders of that name the caller sees in the read models (when none,
once they caught up with the store: a folder just shared with the caller is found); several of
those are AMBIGUOUS with the candidates' ids. What the caller may not see is NOT_FOUND.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from contracts.limits import Text
from contracts.subjects import SubjectError
from contracts.tenancy import Role
from contracts.vfolder import (
    MAX_FOLDER_NAME_CHARS, MAX_PATH_BYTES, FolderPathError, OwnerKind, UsageMode, VFolderPermission, VFolderStatus,
    check_folder_name, is_folder_id,
)
from domain.errors import DomainError
from domain.vfolder.access import Actor, may_manage, permission_of, toward
from domain.vfolder.state import VFolderState
from projections.queries import vfolders as q
from projections.queries.rows import VFolderRow
from services.gateway.context import Info, caller
from services.gateway.errors import AMBIGUOUS, BAD_INPUT, NOT_FOUND, GatewayError, from_domain
from services.gateway.limits import checked_value
from services.gateway.readmodels import read_settled

__all__ = ["FOLDER_REF", "FOLDER_NAME", "PATH", "acting", "folder_scope", "guarded", "load_folder", "resolve_folder", "row_access", "state_of_row"]

T = TypeVar("T")

FOLDER_REF = Text("folder", 128)
"""A folder argument: an id (40 characters) or a name (at most 64)."""
FOLDER_NAME = Text("name", MAX_FOLDER_NAME_CHARS)
PATH = Text("path", MAX_PATH_BYTES, in_bytes=True)


async def guarded(info: Info, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Returns ``fn(*args)`` run on the store's threads; a refusal becomes its GraphQL error."""
    try:
        return await info.context.resources.call(fn, *args, **kwargs)
    except (DomainError, SubjectError) as exc:
        raise from_domain(exc) from exc
    except FolderPathError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc


async def acting(info: Info) -> Actor:
    """Returns the caller as a folder actor (UNAUTHENTICATED when none)."""
    principal = caller(info)
    resources = info.context.resources
    await resources.start()
    return await guarded(info, resources.vfolders.actor, principal.access_key)


def folder_scope(actor: Actor) -> q.FolderScope:
    """Returns what the actor sees of the folder read models (an admin: its domain's folders but its
    superadmins' personal ones, as ``VFolders.facing`` on the write side)."""
    managed = actor.domain if actor.manages(actor.domain) else None
    return q.FolderScope(user=actor.user, domain=actor.domain, projects=sorted(actor.projects), managed=managed,
                         everything=actor.is_superadmin)


async def resolve_folder(info: Info, actor: Actor, ref: str) -> str:
    """Returns the id of the folder ``ref`` means (see the module's rule)."""
    checked_value(FOLDER_REF, ref)
    if is_folder_id(ref):
        return ref
    try:
        ref = check_folder_name(ref)
    except FolderPathError as exc:
        raise GatewayError(BAD_INPUT, f"a folder is given by its id or its name: {exc}") from exc
    resources = info.context.resources
    own = await resources.call(resources.vfolders.find, OwnerKind.USER, actor.user, ref)
    if own is not None:
        return own.id
    rows = await read_settled(resources, q.folders_named, resources.pool, folder_scope(actor), ref)
    if not rows:
        raise GatewayError(NOT_FOUND, f"folder {ref!r} not found")
    if len(rows) > 1:
        candidates = ", ".join(f"{r.folder_id} ({r.owner_kind} {r.owner})" for r in rows)
        raise GatewayError(AMBIGUOUS, f"folder name {ref!r} matches several folders: {candidates}; give its id")
    return rows[0].folder_id


async def load_folder(info: Info, actor: Actor, ref: str) -> VFolderState:
    """Returns the current state of the folder ``ref`` means, from the event store; NOT_FOUND
    unless the caller, as it stands toward the folder (``VFolders.facing``), may see it."""
    folder_id = await resolve_folder(info, actor, ref)
    resources = info.context.resources
    state, actor = await resources.call(resources.vfolders.get_as, folder_id, actor)
    if state is None or (permission_of(state, actor) is None and not may_manage(state, actor)):
        raise GatewayError(NOT_FOUND, f"folder {ref!r} not found")
    return state


def state_of_row(row: VFolderRow, actor: Actor) -> VFolderState:
    """Returns the part of a folder's state the access rules read, from its row (with the reader's share)."""
    shares = {actor.user: VFolderPermission(row.shared_permission)} if row.shared_permission else {}
    return VFolderState(
        id=row.folder_id, version=row.version, name=row.name, volume=row.volume, owner_kind=OwnerKind(row.owner_kind),
        owner=row.owner, domain=row.domain, quota_scope=row.quota_scope, usage_mode=UsageMode(row.usage_mode),
        permission=VFolderPermission(row.permission), cloneable=row.cloneable, clone_of=row.clone_of,
        created_by=row.created_by, status=VFolderStatus(row.status), shares=shares,
    )


def row_access(row: VFolderRow, actor: Actor) -> tuple[str | None, bool]:
    """Returns the reader's own permission on a folder row (None: none) and whether it manages it, as
    it stands toward the folder (``toward``, given the row's ``owner_role``: a domain admin does not
    manage a superadmin's personal folder shared with it)."""
    state = state_of_row(row, actor)
    actor = toward(state, actor, Role(row.owner_role) if row.owner_role else None)
    own = permission_of(state, actor)
    return (own.value if own is not None else None), may_manage(state, actor)

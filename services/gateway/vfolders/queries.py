"""Folder queries: the folders the caller sees, one folder, the caller's invitations, and storage
usage per quota scope; read from the read models within the caller's ``FolderScope``."""

from __future__ import annotations

import strawberry

from contracts.limits import Many, Text
from contracts.subjects import SubjectError, check_token
from contracts.tenancy import Role, project_id, user_id
from contracts.vfolder import quota_scope_of
from domain.tenancy import UserState
from domain.vfolder.access import Actor
from projections.queries import vfolders as q
from projections.queries.rows import VFolderRow
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, NOT_FOUND, GatewayError
from services.gateway.limits import checked_choice, checked_value
from services.gateway.readmodels import AfterPosition, await_position, read, read_settled
from services.gateway.vfolders.access import acting, folder_scope, resolve_folder, row_access
from services.gateway.vfolders.types import StorageUsage, VFolder, VFolderInvitation, VFolderShare

__all__ = ["VFolderQuery", "to_folder"]

SCOPES = Many("scopes", 64, each=Text("scopes entry", 80))
_STATUSES = ("provisioning", "ready", "error", "trashed", "purging", "purged")


async def to_folder(info: Info, row: VFolderRow, actor: Actor) -> VFolder:
    """Returns the GraphQL folder of a row; its shares only for its managers."""
    mine, manages = row_access(row, actor)
    shares: list[VFolderShare] = []
    if manages:
        shares = [VFolderShare.from_row(s) for s in await read(q.folder_shares, info.context.resources.pool,
                                                                 row.folder_id)]
    return VFolder.from_row(row, mine, shares)


def is_token(name: str) -> bool:
    try:
        check_token(name)
    except SubjectError:
        return False
    return True


async def _manages_scope(info: Info, actor: Actor, kind: str, name: str) -> bool:
    """Returns True when the actor administers the domain of the scope's user or project, and the
    user is no superadmin (no admin reaches a superadmin's folders: ``domain.vfolder.access.toward``)."""
    if actor.is_superadmin:
        return True
    resources = info.context.resources
    state = await resources.call(resources.tenancy.get, user_id(name) if kind == "user" else project_id(name))
    if isinstance(state, UserState) and state.role is Role.SUPERADMIN:
        return False
    return state is not None and actor.manages(getattr(state, "domain", ""))


@strawberry.type
class VFolderQuery:
    @strawberry.field(description="The folders you see: your own, shared with you, your projects' (an admin: its "
                      "domain's but a superadmin's personal ones; a superadmin: all). Live ones (trashed included) "
                      "unless includePurged; at most 1000.")
    async def vfolders(self, info: Info, status: str | None = None, include_purged: bool = False,
                       owner_kind: str | None = None, after_position: AfterPosition = None) -> list[VFolder]:
        if status is not None:
            checked_choice("status", status)
        if owner_kind is not None:
            checked_choice("ownerKind", owner_kind)
        actor = await acting(info)
        if status is not None and status not in _STATUSES:
            raise GatewayError(BAD_INPUT, f"unknown status {status!r}: one of {', '.join(_STATUSES)}")
        if owner_kind is not None and owner_kind not in ("user", "project"):
            raise GatewayError(BAD_INPUT, "ownerKind is user or project")
        await await_position(info, after_position)
        rows = await read(q.list_folders, info.context.resources.pool, folder_scope(actor), status=status,
                          include_purged=include_purged or status == "purged", owner_kind=owner_kind)
        return [await to_folder(info, row, actor) for row in rows]

    @strawberry.field(description="One folder you see, by id or name.")
    async def vfolder(self, info: Info, folder: str, after_position: AfterPosition = None) -> VFolder:
        actor = await acting(info)
        folder_id = await resolve_folder(info, actor, folder)
        await await_position(info, after_position)
        resources = info.context.resources
        row = await read_settled(resources, q.folder, resources.pool, folder_scope(actor), folder_id)
        if row is None:
            raise GatewayError(NOT_FOUND, f"folder {folder!r} not found")
        return await to_folder(info, row, actor)

    @strawberry.field(description="Your invitations to folders (pending ones unless all).")
    async def vfolder_invitations(self, info: Info, all: bool = False,
                                  after_position: AfterPosition = None) -> list[VFolderInvitation]:
        actor = await acting(info)
        await await_position(info, after_position)
        rows = await read(q.invitations_for, info.context.resources.pool, actor.user,
                          state=None if all else "pending")
        return [VFolderInvitation.from_row(row) for row in rows]

    @strawberry.field(description="Storage per quota scope: yours and your projects' (an admin may name any scope "
                      "of its domain's users but a superadmin and of its projects in `scopes`, as user:<name> or "
                      "project:<name>).")
    async def storage_usage(self, info: Info, scopes: list[str] | None = None,
                            after_position: AfterPosition = None) -> list[StorageUsage]:
        if scopes is not None:
            checked_value(SCOPES, scopes)
        actor = await acting(info)
        own = [quota_scope_of("user", actor.user)] + [quota_scope_of("project", p) for p in sorted(actor.projects)]
        wanted = scopes if scopes is not None else own
        for scope in wanted:
            kind, _, name = scope.partition(":")
            if kind not in ("user", "project") or not is_token(name):
                raise GatewayError(BAD_INPUT, f"a quota scope is user:<name> or project:<name>, not {scope[:80]!r}")
            if scope not in own and not await _manages_scope(info, actor, kind, name):
                raise GatewayError(NOT_FOUND, f"quota scope {scope!r} not found")
        await await_position(info, after_position)
        rows = await read(q.storage_usage, info.context.resources.pool, list(wanted))
        return [StorageUsage.from_row(row) for row in rows]

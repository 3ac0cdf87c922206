"""Folder mutations: each a decision of ``services.application.vfolders.VFolders`` as the caller
(``access.acting``); who may do what is the domain's rule (``domain.vfolder.access``), a refusal
records nothing. Each returns the folder (or invitation) id and the event-store position of its
last event (pass it as ``afterPosition``)."""

from __future__ import annotations

import strawberry

from contracts.subjects import SubjectError, check_token
from contracts.vfolder import DEFAULT_VOLUME, OwnerKind, quota_scope_of
from domain.emitting import Context
from domain.vfolder.decide import NewFolder
from projections.queries import vfolders as q
from projections.queries.mounts import sessions_mounting
from services.application.context import make_context
from services.gateway.context import caller
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, NOT_FOUND, GatewayError
from services.gateway.limits import checked_choice, checked_name, checked_value
from services.gateway.readmodels import AfterPosition, await_position, read, read_position, read_settled
from services.gateway.vfolders.access import FOLDER_NAME, acting, guarded, resolve_folder
from services.gateway.vfolders.types import VFolderResult

__all__ = ["CreateVFolderInput", "VFolderMutation"]

@strawberry.input(description="A new folder: yours, or a project's when `project` is given (admins).")
class CreateVFolderInput:
    name: str
    volume: str = DEFAULT_VOLUME
    project: str | None = None
    usage_mode: str = "general"
    permission: str = strawberry.field(default="rw", description="A project folder's members' default: ro, rw or wd.")
    cloneable: bool = False


def _ctx(info: Info) -> Context:
    """The decision context: events' actor is the caller's access key (``by`` names its user)."""
    return make_context(caller(info).access_key)


def _bounded(value: str, what: str) -> str:
    """Returns a user, project, volume or invitation name when it can be one (at most 64 letters,
    digits, ``-``, ``_``: every such name is a subject token); BAD_INPUT otherwise."""
    checked_name(what, value)
    try:
        return check_token(value, what)
    except SubjectError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from exc


def _bytes(value: float, what: str) -> int:
    if value != value or value < 0 or value != int(value):
        raise GatewayError(BAD_INPUT, f"{what} is a whole number of bytes >= 0")
    return int(value)


async def _change(info: Info, folder: str, method: str, *args: object, in_use: bool = False) -> VFolderResult:
    """Resolves ``folder`` and runs ``VFolders.<method>(folder_id, *args, actor, ctx)``; with ``in_use``
    (trash, purge), also the live sessions a read model says mount it (``_mounting``)."""
    actor = await acting(info)
    folder_id = await resolve_folder(info, actor, folder)
    vfolders = info.context.resources.vfolders
    extra = await _mounting(info, folder_id) if in_use else {}
    position = await guarded(info, getattr(vfolders, method), folder_id, *args, actor, _ctx(info), **extra)
    return VFolderResult(id=folder_id, position=position)


async def _mounting(info: Info, folder_id: str) -> dict[str, object]:
    """Returns ``candidates``: the ids of the live sessions that mount the folder by the sessions read
    model, and ``seen``: a position it had reached before (the use case reads the sessions requested
    after it from the store, so a lagging read model hides none)."""
    pool = info.context.resources.pool
    seen = await read_position(pool)
    return {"candidates": await read(sessions_mounting, pool, folder_id), "seen": seen}


async def _invitation_folder(info: Info, user: str, invitation_id: str) -> str:
    """Returns the folder of an invitation of ``user``: one just sent (no ``afterPosition``) is found
    once the read models caught up with the store (``read_settled``), never refused as unknown."""
    resources = info.context.resources
    row = await read_settled(resources, q.invitation, resources.pool, user, invitation_id)
    if row is None:
        raise GatewayError(NOT_FOUND, f"no invitation {invitation_id!r} for you")
    return row.folder_id


@strawberry.type
class VFolderMutation:
    @strawberry.mutation(name="createVFolder", description="Creates a folder (status provisioning until the storage service made it).")
    async def create_vfolder(self, info: Info, input: CreateVFolderInput) -> VFolderResult:
        checked_value(FOLDER_NAME, input.name)
        checked_choice("usageMode", input.usage_mode)
        checked_choice("permission", input.permission)
        actor = await acting(info)
        _bounded(input.volume, "volume")
        kind, owner = (OwnerKind.PROJECT, _bounded(input.project, "project")) if input.project else (
            OwnerKind.USER, actor.user)
        resources = info.context.resources
        owned = 0 if kind is OwnerKind.PROJECT else await read(q.owned_count, resources.pool, actor.user)

        def create() -> tuple[str, int]:
            request = NewFolder(name=input.name, volume=input.volume, owner_kind=kind, owner=owner,
                                domain=actor.domain, usage_mode=input.usage_mode, permission=input.permission,
                                cloneable=input.cloneable)
            return resources.vfolders.create(actor, request, _ctx(info), owned=owned)

        folder_id, position = await guarded(info, create)
        return VFolderResult(id=folder_id, position=position)

    @strawberry.mutation(name="cloneVFolder", description="Clones a cloneable folder you may read into a new folder of yours.")
    async def clone_vfolder(self, info: Info, folder: str, name: str, cloneable: bool = False) -> VFolderResult:
        checked_value(FOLDER_NAME, name)
        actor = await acting(info)
        source = await resolve_folder(info, actor, folder)
        resources = info.context.resources
        owned = await read(q.owned_count, resources.pool, actor.user)
        scope = await read(q.scope_usage, resources.pool, quota_scope_of(OwnerKind.USER, actor.user))
        room = max(0, scope.limit_bytes - scope.usage_bytes) if scope.limit_bytes > 0 else None
        folder_id, position = await guarded(info, resources.vfolders.clone, source, actor, name,
                                            _ctx(info), owned=owned, cloneable=cloneable, room=room)
        return VFolderResult(id=folder_id, position=position)

    @strawberry.mutation(name="renameVFolder", description="Renames a folder (its owner or an admin).")
    async def rename_vfolder(self, info: Info, folder: str, name: str) -> VFolderResult:
        checked_value(FOLDER_NAME, name)
        return await _change(info, folder, "rename", name)

    @strawberry.mutation(name="trashVFolder", description="Moves a folder to the trash (it can no longer be mounted; restore or purge it); "
                         "CONFLICT while a live session mounts it.")
    async def trash_vfolder(self, info: Info, folder: str) -> VFolderResult:
        return await _change(info, folder, "trash", in_use=True)

    @strawberry.mutation(name="restoreVFolder", description="Brings a folder back from the trash.")
    async def restore_vfolder(self, info: Info, folder: str) -> VFolderResult:
        return await _change(info, folder, "restore")

    @strawberry.mutation(name="purgeVFolder", description="Deletes a folder in the trash for good (the storage service removes its data; "
                         "its history stays); CONFLICT while a live session mounts it.")
    async def purge_vfolder(self, info: Info, folder: str) -> VFolderResult:
        return await _change(info, folder, "purge", in_use=True)

    @strawberry.mutation(name="shareVFolder", description="Shares a folder with a user of its domain at a permission (a project folder: a "
                         "per-user override); sharing again changes the permission.")
    async def share_vfolder(self, info: Info, folder: str, user: str, permission: str = "ro") -> VFolderResult:
        return await _change(info, folder, "share", _bounded(user, "user"), checked_choice("permission", permission))

    @strawberry.mutation(name="unshareVFolder", description="Stops sharing a folder with a user; CONFLICT while a live "
                         "session of that user mounts it.")
    async def unshare_vfolder(self, info: Info, folder: str, user: str) -> VFolderResult:
        return await _change(info, folder, "unshare", _bounded(user, "user"), in_use=True)

    @strawberry.mutation(name="setVFolderPermission", description="Changes the permission of a user a folder is shared "
                         "with; a lower one is CONFLICT while a live session of that user mounts it.")
    async def set_vfolder_permission(self, info: Info, folder: str, user: str, permission: str) -> VFolderResult:
        return await _change(info, folder, "set_permission", _bounded(user, "user"),
                             checked_choice("permission", permission), in_use=True)

    @strawberry.mutation(name="setVFolderQuota", description="Sets a folder's own cap in bytes, 0: none (admins).")
    async def set_vfolder_quota(self, info: Info, folder: str, limit_bytes: float) -> VFolderResult:
        return await _change(info, folder, "set_quota", _bytes(limit_bytes, "limitBytes"))

    @strawberry.mutation(name="inviteToVFolder", description="Invites a user of its domain to your folder; `id` is the invitation's.")
    async def invite_to_vfolder(self, info: Info, folder: str, user: str, permission: str = "ro") -> VFolderResult:
        user, permission = _bounded(user, "user"), checked_choice("permission", permission)
        actor = await acting(info)
        folder_id = await resolve_folder(info, actor, folder)
        invitation_id, position = await guarded(info, info.context.resources.vfolders.invite, folder_id,
                                                user, permission, actor, _ctx(info))
        return VFolderResult(id=invitation_id, position=position)

    @strawberry.mutation(name="acceptVFolderInvitation", description="Accepts an invitation of yours: the folder is shared with you.")
    async def accept_vfolder_invitation(self, info: Info, invitation_id: str,
                                        after_position: AfterPosition = None) -> VFolderResult:
        return await _answer(info, invitation_id, "accept", after_position)

    @strawberry.mutation(name="rejectVFolderInvitation", description="Rejects an invitation of yours.")
    async def reject_vfolder_invitation(self, info: Info, invitation_id: str,
                                        after_position: AfterPosition = None) -> VFolderResult:
        return await _answer(info, invitation_id, "reject", after_position)

    @strawberry.mutation(name="withdrawVFolderInvitation", description="Withdraws a pending invitation to a folder "
                         "(its inviter or a manager of the folder): it can no longer be accepted.")
    async def withdraw_vfolder_invitation(self, info: Info, folder: str, invitation_id: str) -> VFolderResult:
        return await _change(info, folder, "withdraw_invitation", _bounded(invitation_id, "invitationId"))

    @strawberry.mutation(name="leaveVFolder", description="Leaves a folder shared with you; CONFLICT while a live "
                         "session of yours mounts it.")
    async def leave_vfolder(self, info: Info, folder: str) -> VFolderResult:
        return await _change(info, folder, "leave", in_use=True)

    @strawberry.mutation(name="setProjectStorageLimit", description="Sets the bytes a project's folders may hold together, 0: no limit (admins of "
                         "its domain).")
    async def set_project_storage_limit(self, info: Info, project: str, limit_bytes: float) -> VFolderResult:
        actor = await acting(info)
        position = await guarded(info, info.context.resources.vfolders.set_project_storage_limit,
                                 _bounded(project, "project"), _bytes(limit_bytes, "limitBytes"), actor,
                                 _ctx(info))
        return VFolderResult(id=project, position=position)


async def _answer(info: Info, invitation_id: str, method: str, after_position: int | None) -> VFolderResult:
    _bounded(invitation_id, "invitationId")
    actor = await acting(info)
    await await_position(info, after_position)
    folder_id = await _invitation_folder(info, actor.user, invitation_id)
    position = await guarded(info, getattr(info.context.resources.vfolders, method), folder_id, invitation_id, actor,
                             _ctx(info))
    return VFolderResult(id=folder_id, position=position)

"""Folder decisions: each returns the events a request causes (none for a no-op) or raises a
``DomainError`` saying why it is refused. Pure: time, actor and ids arrive as arguments.

Who may: ``access.py``. Limits: ``max_vfolder_count`` (folders a user owns, trashed ones
included) is checked by ``create`` with the count the caller read (``count.py``, saved with the
creation); a quota cap is 0..2^62 bytes.
A folder mounted by a live session is neither trashed nor purged (Backend.AI refuses it too):
``trash`` and ``purge`` take the live sessions mounting it, as the caller found them.
Invitations (invite, accept, reject, withdraw) are decided in ``invitations.py``: a share, unshare
or permission change here withdraws the pending invitations of the user it concerns.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts import vfolder as ev
from contracts.envelope import Event
from contracts.vfolder import (
    FolderPathError,
    OwnerKind,
    UsageMode,
    VFolderPermission,
    VFolderStatus,
    VolumePermission,
    WithdrawalReason,
    check_folder_name,
    check_folder_path,
    quota_scope_of,
)
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError, ForbiddenError, InvalidRequestError, InvalidTransitionError, NotFoundError
from domain.tenancy.enqueue import QuotaExceededError
from domain.vfolder.access import (
    Actor, check_not_self_granted, check_volume, may_see, require, require_manager,
)
from domain.vfolder.checks import check_live, check_other_user, valid_permission
from domain.vfolder.in_use import MountingSession, check_not_mounted, users_sessions
from domain.vfolder.invitations import accept, invite, reject, superseded, withdraw
from domain.vfolder.state import VFolderState

__all__ = [
    "MAX_QUOTA_BYTES",
    "NewFolder",
    "accept",
    "check_paths",
    "files_deleted",
    "content_changed",
    "provision_failed",
    "provisioned",
    "purged",
    "usage_measured",
    "clone",
    "create",
    "invite",
    "leave",
    "purge",
    "reject",
    "rename",
    "restore",
    "set_permission",
    "set_quota",
    "share",
    "trash",
    "unshare",
    "valid_name",
    "withdraw",
]

MAX_QUOTA_BYTES = 2**62
"""The largest folder cap accepted (bytes; 4 EiB)."""

_RO, _RW, _WD = VFolderPermission.RO, VFolderPermission.RW, VFolderPermission.WD


def valid_name(name: str) -> str:
    """Returns the folder name normalised; InvalidRequestError when it is not valid."""
    try:
        return check_folder_name(name)
    except FolderPathError as exc:
        raise InvalidRequestError(str(exc)) from exc


def _emit(state: VFolderState, ctx: Context) -> Emitter:
    return Emitter(state.id, state.version, ctx)


class NewFolder:
    """What ``create`` needs to know of a new folder's request, validated."""

    def __init__(self, *, name: str, volume: str, owner_kind: str | OwnerKind, owner: str, domain: str,
                 usage_mode: str | UsageMode = UsageMode.GENERAL, permission: str | VFolderPermission = _RW,
                 cloneable: bool = False, clone_of: str | None = None) -> None:
        self.name = valid_name(name)
        self.volume = volume
        try:
            self.owner_kind = OwnerKind(owner_kind)
            self.usage_mode = UsageMode(usage_mode)
        except ValueError as exc:
            raise InvalidRequestError(
                f"{exc}: owner kind is user or project, usage mode general, model or data") from None
        self.owner = owner
        self.domain = domain
        self.permission = valid_permission(permission)
        self.cloneable = cloneable
        self.clone_of = clone_of


def create(state: VFolderState | None, folder_id: str, request: NewFolder, actor: Actor, ctx: Context, *,
           owned: int) -> list[Event]:
    """A new folder (``provisioning``). A project folder needs an admin of the project's domain
    (Backend.AI: only admins create group folders) or a member when ``actor`` manages; a user
    folder is the actor's own. ``owned``: folders the owner has now; refused at the actor's
    ``max_vfolder_count`` (0: no limit)."""
    if state is not None:
        raise AlreadyExistsError(f"folder {folder_id} already exists")
    check_volume(actor, request.volume, VolumePermission.CREATE_VFOLDER)
    if request.owner_kind is OwnerKind.USER:
        if request.owner != actor.user:
            raise ForbiddenError("a user folder is created by its owner")
        max_count = actor.max_vfolder_count
        if max_count and owned >= max_count:
            raise InvalidRequestError(
                f"you own {owned} folders, the most your resource policy allows (max_vfolder_count {max_count}): "
                "purge one first")
    elif not actor.manages(request.domain):
        raise ForbiddenError(f"only an admin of domain {request.domain!r} may create project folders")
    emit = Emitter(folder_id, 0, ctx)
    return [emit(ev.VFolderCreated, name=request.name, volume=request.volume, owner_kind=request.owner_kind,
                 owner=request.owner, domain=request.domain,
                 quota_scope=quota_scope_of(request.owner_kind, request.owner), usage_mode=request.usage_mode,
                 permission=request.permission, cloneable=request.cloneable, clone_of=request.clone_of,
                 by=actor.user)]


def clone(source: VFolderState | None, folder_id: str, name: str, actor: Actor, ctx: Context, *,
          owned: int, cloneable: bool = False, usage_mode: str | None = None, room: int | None = None) -> list[Event]:
    """A new user folder of the actor with a copy of ``source``'s content (the storage service
    copies it). The source must be cloneable, ready and readable by the actor, and its bytes fit in ``room``, what
    the actor's quota scope has left (None: no limit; before, a clone ignored it: three clones of a 15 kB folder
    held 60 kB of a 20 kB scope)."""
    source = require(source, actor, _RO, "cloning")
    if not source.cloneable:
        raise ForbiddenError(f"folder {source.name!r} is not cloneable")
    if source.status is not VFolderStatus.READY:
        raise InvalidTransitionError(f"folder {source.name!r} is {source.status.value}: only a ready folder is cloned")
    if room is not None and source.counted_bytes > room:
        raise QuotaExceededError(f"a clone of folder {source.name!r} ({source.counted_bytes} bytes) is over your "
                                 f"folders' quota: {room} bytes left")
    request = NewFolder(name=name, volume=source.volume, owner_kind=OwnerKind.USER, owner=actor.user,
                        domain=actor.domain, usage_mode=usage_mode or source.usage_mode, cloneable=cloneable,
                        clone_of=source.id)
    return create(None, folder_id, request, actor, ctx, owned=owned)


def rename(state: VFolderState | None, name: str, actor: Actor, ctx: Context) -> list[Event]:
    state = require_manager(state, actor, "rename it")
    check_volume(actor, state.volume, VolumePermission.MODIFY_VFOLDER)
    check_live(state, "rename it")
    name = valid_name(name)
    if name == state.name:
        return []
    return [_emit(state, ctx)(ev.VFolderRenamed, name=name, previous=state.name, by=actor.user)]


def share(state: VFolderState | None, user: str, permission: str, actor: Actor, ctx: Context, *,
          user_domain: str | None, user_projects: frozenset[str] = frozenset()) -> list[Event]:
    """Gives ``user`` (of the folder's domain; ``user_domain`` None: no such user) ``permission``:
    a project folder's per-user override (for a member of the project, ``user_projects``), or a
    user folder shared by its owner directly (a manager may not share another's with itself).
    Sharing again with another permission changes it.
    The user's pending invitations to the folder are withdrawn (the share decides their permission)."""
    state = require_manager(state, actor, "share it")
    check_not_self_granted(state, actor, user, "share it with")
    check_volume(actor, state.volume, VolumePermission.SET_USER_SPECIFIC_PERMISSION)
    check_live(state, "share it")
    wanted = valid_permission(permission)
    check_other_user(state, user, user_domain)
    if state.owner_kind is OwnerKind.PROJECT and state.owner not in user_projects:
        raise InvalidRequestError(f"{user!r} is not a member of project {state.owner!r}: a project folder's "
                                  "permissions are its members'")
    current = state.shares.get(user)
    emit = _emit(state, ctx)
    change = ev.VFolderShared if current is None else ev.VFolderPermissionChanged
    events = [] if current is wanted else [emit(change, user=user, permission=wanted, by=actor.user)]
    return events + superseded(state, user, WithdrawalReason.SHARED, emit, actor.user)


def set_permission(state: VFolderState | None, user: str, permission: str, actor: Actor, ctx: Context,
                   mounted_by: Sequence[MountingSession] = ()) -> list[Event]:
    """Changes the permission of a user the folder is shared with (and withdraws their pending invitations); a lower
    one is refused while that user's live sessions (among ``mounted_by``) mount it."""
    state = require_manager(state, actor, "change permissions")
    check_volume(actor, state.volume, VolumePermission.SET_USER_SPECIFIC_PERMISSION)
    wanted = valid_permission(permission)
    current = state.shares.get(user)
    if current is None:
        raise InvalidRequestError(f"folder {state.name!r} is not shared with {user!r}")
    if wanted.rank < current.rank:
        check_not_mounted(state, users_sessions(mounted_by, user), actor, f"lower {user}'s permission")
    emit = _emit(state, ctx)
    events = [] if current is wanted else [emit(ev.VFolderPermissionChanged, user=user, permission=wanted,
                                                by=actor.user)]
    return events + superseded(state, user, WithdrawalReason.PERMISSION_CHANGED, emit, actor.user)


def unshare(state: VFolderState | None, user: str, actor: Actor, ctx: Context,
            mounted_by: Sequence[MountingSession] = ()) -> list[Event]:
    """Stops sharing the folder with ``user`` and withdraws their pending invitations to it; refused while that user's
    live sessions (among ``mounted_by``) mount it."""
    state = require_manager(state, actor, "unshare it")
    check_volume(actor, state.volume, VolumePermission.SET_USER_SPECIFIC_PERMISSION)
    if user in state.shares:
        check_not_mounted(state, users_sessions(mounted_by, user), actor, f"stop sharing it with {user!r}")
    emit = _emit(state, ctx)
    events = [emit(ev.VFolderUnshared, user=user, by=actor.user)] if user in state.shares else []
    return events + superseded(state, user, WithdrawalReason.UNSHARED, emit, actor.user)


def leave(state: VFolderState | None, actor: Actor, ctx: Context,
          mounted_by: Sequence[MountingSession] = ()) -> list[Event]:
    """A user the folder is shared with stops having it (its owner and project members cannot leave); refused while
    the user's live sessions (among ``mounted_by``) mount it."""
    if state is None or not may_see(state, actor):
        raise NotFoundError("folder not found")
    if actor.user not in state.shares:
        raise InvalidTransitionError(f"folder {state.name!r} is not shared with you (you own it, manage it or are a "
                                     "member of its project): nothing to leave")
    check_not_mounted(state, users_sessions(mounted_by, actor.user), actor, "leave it")
    return [_emit(state, ctx)(ev.VFolderLeft, user=actor.user)]


def trash(state: VFolderState | None, actor: Actor, ctx: Context,
          mounted_by: Sequence[MountingSession] = ()) -> list[Event]:
    """Moves the folder to the trash; refused while a live session (``mounted_by``) mounts it."""
    state = require_manager(state, actor, "move it to the trash")
    check_volume(actor, state.volume, VolumePermission.DELETE_VFOLDER)
    if state.status is VFolderStatus.TRASHED:
        return []
    if state.status not in (VFolderStatus.READY, VFolderStatus.ERROR):
        raise InvalidTransitionError(f"folder {state.name!r} is {state.status.value}: only a ready or failed "
                                     "folder goes to the trash")
    check_not_mounted(state, mounted_by, actor, "move it to the trash")
    return [_emit(state, ctx)(ev.VFolderTrashed, by=actor.user)]


def restore(state: VFolderState | None, actor: Actor, ctx: Context) -> list[Event]:
    state = require_manager(state, actor, "restore it")
    if state.status is not VFolderStatus.TRASHED:
        raise InvalidTransitionError(f"folder {state.name!r} is {state.status.value}, not in the trash")
    return [_emit(state, ctx)(ev.VFolderRestored, by=actor.user)]


def purge(state: VFolderState | None, actor: Actor, ctx: Context,
          mounted_by: Sequence[MountingSession] = ()) -> list[Event]:
    """Deletes a folder for good (only from the trash); the storage service removes its directory.
    Refused while a live session (``mounted_by``: one that mounted it before it was trashed) mounts it."""
    state = require_manager(state, actor, "purge it")
    check_volume(actor, state.volume, VolumePermission.DELETE_VFOLDER)
    if state.status in (VFolderStatus.PURGING, VFolderStatus.PURGED):
        return []
    if state.status is not VFolderStatus.TRASHED:
        raise InvalidTransitionError(f"folder {state.name!r} is {state.status.value}: move it to the trash first")
    check_not_mounted(state, mounted_by, actor, "purge it")
    return [_emit(state, ctx)(ev.VFolderPurgeRequested, by=actor.user)]


def set_quota(state: VFolderState | None, limit_bytes: int, actor: Actor, ctx: Context) -> list[Event]:
    """Sets the folder's own cap in bytes (0: none); an admin's act (a user does not raise its own)."""
    state = require_manager(state, actor, "set its quota")
    if not actor.manages(state.domain):
        raise ForbiddenError("only an admin may set a folder's quota")
    if not 0 <= limit_bytes <= MAX_QUOTA_BYTES:
        raise InvalidRequestError(f"a quota is 0 (none) to {MAX_QUOTA_BYTES} bytes, not {limit_bytes}")
    check_live(state, "set its quota")
    if limit_bytes == state.quota_limit:
        return []
    return [_emit(state, ctx)(ev.VFolderQuotaSet, limit_bytes=limit_bytes, by=actor.user)]


# --- facts reported by the storage service --------------------------------------------------


def provisioned(state: VFolderState, ctx: Context) -> list[Event]:
    if state.provisioned or not state.is_live:
        return []
    return [_emit(state, ctx)(ev.VFolderProvisioned)]


def provision_failed(state: VFolderState, reason: str, ctx: Context) -> list[Event]:
    if state.provisioned or state.status is not VFolderStatus.PROVISIONING:
        return []
    return [_emit(state, ctx)(ev.VFolderProvisionFailed, reason=reason[:2000])]


def purged(state: VFolderState, ctx: Context) -> list[Event]:
    if state.status is not VFolderStatus.PURGING:
        return []
    return [_emit(state, ctx)(ev.VFolderPurged)]


def usage_measured(state: VFolderState, size: int, files: int, ctx: Context) -> list[Event]:
    unchanged = (size, files) == (state.usage_bytes, state.usage_files) and not state.uploaded_bytes
    if state.status is VFolderStatus.PURGED or unchanged:  # a measure after uploads settles their bytes
        return []
    if size < 0 or files < 0:
        raise InvalidRequestError("usage is never negative")
    return [_emit(state, ctx)(ev.VFolderUsageMeasured, bytes=size, files=files)]


def content_changed(state: VFolderState, cls: type[Event], ctx: Context, **fields: object) -> list[Event]:
    """A file uploaded, files deleted or moved, a directory created (recorded unless purged)."""
    if state.status is VFolderStatus.PURGED:
        return []
    return [_emit(state, ctx)(cls, **fields)]


MAX_PATHS_BYTES_PER_EVENT = 64 * 1024
"""The most path bytes one ``vfolder.files_deleted`` carries; a longer list is split over several
events (each far below ``contracts.travel.MAX_EVENT_BYTES``)."""


def files_deleted(state: VFolderState, paths: Sequence[str], by: str, ctx: Context) -> list[Event]:
    """The deletion of ``paths`` (normalised), in as many events as their size needs (recorded unless purged)."""
    if state.status is VFolderStatus.PURGED or not paths:
        return []
    emit = _emit(state, ctx)
    events: list[Event] = []
    chunk: list[str] = []
    size = 0
    for path in check_paths(paths):
        if chunk and size + len(path.encode()) > MAX_PATHS_BYTES_PER_EVENT:
            events.append(emit(ev.VFolderFilesDeleted, paths=chunk, by=by))
            chunk, size = [], 0
        chunk.append(path)
        size += len(path.encode())
    events.append(emit(ev.VFolderFilesDeleted, paths=chunk, by=by))
    return events


def check_paths(paths: Sequence[str]) -> list[str]:
    """Returns the paths normalised; InvalidRequestError naming the first bad one."""
    try:
        return [check_folder_path(p) for p in paths]
    except FolderPathError as exc:
        raise InvalidRequestError(str(exc)) from exc

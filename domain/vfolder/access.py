"""Who may do what with a folder (Backend.AI's rules), as pure functions of an ``Actor``.

Effective permission of a user (``permission_of``):
- the owner of a user folder: ``wd``;
- a user the folder is shared with (directly, or by an accepted invitation): that permission;
- a member of the project owning a project folder: the per-user override (a share) or the
  folder's default ``permission``;
- otherwise none. A domain admin (of the folder's domain) or a superadmin *manages* every folder
  (``may_manage``: rename, trash, restore, purge, share, quota) but gets no permission on another
  user's personal folder for reading or mounting (Backend.AI does not give it either), nor gives
  itself one by sharing or inviting (``decide.share``, ``invitations.invite``).
- A superadmin's personal folder is no domain admin's: no admin acts on a superadmin (as in
  tenancy), so toward it a domain admin is any user of the domain (``toward``, given the owner's
  role, which the caller reads only when ``owner_role_matters``).

Volume permissions (``allowed_vfolder_hosts`` of the actor's keypair policy): each operation
also needs its ``VolumePermission`` on the folder's volume (``check_volume``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from contracts.tenancy import Role
from contracts.vfolder import OwnerKind, VFolderPermission, VolumePermission
from domain.errors import ForbiddenError, NotFoundError
from domain.vfolder.state import VFolderState

__all__ = [
    "Actor", "check_not_self_granted", "check_volume", "may_manage", "may_see", "owner_role_matters", "permission_of",
    "require", "require_manager", "toward",
]


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """The user acting, as a folder decision needs to know it."""

    user: str
    role: Role = Role.USER
    domain: str
    projects: frozenset[str] = frozenset()
    volumes: Mapping[str, frozenset[VolumePermission]] = {}
    """Volume -> what the actor's keypair policy allows there."""
    max_vfolder_count: int = 0
    """Folders the actor may own (its policy's; 0: no limit)."""

    @property
    def is_superadmin(self) -> bool:
        return self.role is Role.SUPERADMIN

    def manages(self, domain: str) -> bool:
        return self.is_superadmin or (self.role is Role.ADMIN and self.domain == domain)


def permission_of(folder: VFolderState, actor: Actor) -> VFolderPermission | None:
    """Returns the actor's own permission on ``folder`` (None: none)."""
    if folder.owner_kind is OwnerKind.USER and folder.owner == actor.user:
        return VFolderPermission.WD
    shared = folder.shares.get(actor.user)
    if shared is not None:
        return shared
    if folder.owner_kind is OwnerKind.PROJECT and folder.owner in actor.projects:
        return folder.permission
    return None


def may_manage(folder: VFolderState, actor: Actor) -> bool:
    """Returns True when the actor administers the folder: owner of a user folder, an admin of
    its domain, a superadmin."""
    if folder.owner_kind is OwnerKind.USER and folder.owner == actor.user:
        return True
    return actor.manages(folder.domain)


def owner_role_matters(folder: VFolderState, actor: Actor) -> bool:
    """Returns True when the actor's reach over ``folder`` depends on its owner's role: a domain admin
    and a personal folder of another user of its domain (``toward``)."""
    return (actor.role is Role.ADMIN and folder.owner_kind is OwnerKind.USER and folder.owner != actor.user
            and folder.domain == actor.domain)


def toward(folder: VFolderState, actor: Actor, owner_role: Role | None) -> Actor:
    """Returns the actor as it stands toward ``folder``, whose owner has ``owner_role`` (None: unknown):
    toward a superadmin's personal folder a domain admin is a user of the domain like any other, so it
    neither sees nor manages it unless shared with it."""
    if owner_role is Role.SUPERADMIN and owner_role_matters(folder, actor):
        return msgspec.structs.replace(actor, role=Role.USER)
    return actor


def check_not_self_granted(folder: VFolderState, actor: Actor, user: str, what: str) -> None:
    """Raises ForbiddenError when a manager of another user's personal folder would give ``user``, itself,
    a permission on it (``what``: share, invite): managing gives none (Backend.AI's rule), and a share or
    an invitation to oneself must not be the way around it."""
    if folder.owner_kind is OwnerKind.USER and user == actor.user != folder.owner:
        raise ForbiddenError(f"managing folder {folder.name!r} gives you no permission on it: only its owner "
                             f"may {what} you")


def may_see(folder: VFolderState, actor: Actor) -> bool:
    return permission_of(folder, actor) is not None or may_manage(folder, actor)


def _not_found(folder: VFolderState) -> NotFoundError:
    return NotFoundError(f"folder {folder.id} not found")


def require(folder: VFolderState | None, actor: Actor, needed: VFolderPermission, what: str) -> VFolderState:
    """Returns ``folder`` when the actor's permission is at least ``needed``; NotFoundError when
    the actor may not see it (existence does not leak), ForbiddenError when too low."""
    if folder is None or not may_see(folder, actor):
        raise NotFoundError("folder not found") if folder is None else _not_found(folder)
    own = permission_of(folder, actor)
    if own is None or not own.at_least(needed):
        shown = own.value if own is not None else "none"
        raise ForbiddenError(f"{what} needs permission {needed.value} on folder {folder.name!r}; you have {shown}")
    return folder


def require_manager(folder: VFolderState | None, actor: Actor, what: str) -> VFolderState:
    """Returns ``folder`` when the actor manages it; NotFoundError / ForbiddenError otherwise."""
    if folder is None or not may_see(folder, actor):
        raise NotFoundError("folder not found") if folder is None else _not_found(folder)
    if not may_manage(folder, actor):
        raise ForbiddenError(f"only the owner of folder {folder.name!r} or an admin may {what}")
    return folder


def check_volume(actor: Actor, volume: str, needed: VolumePermission) -> None:
    """Raises ForbiddenError unless the actor's policy allows ``needed`` on ``volume``."""
    if needed not in actor.volumes.get(volume, frozenset()):
        raise ForbiddenError(f"your resource policy does not allow {needed.value} on volume {volume!r}")

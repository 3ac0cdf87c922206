"""Enqueue-time resolution of a session's folder mounts (Backend.AI's ``--mount``): pure, over the
facts the caller loaded about each folder for the requesting user.

A requested folder must exist among those the user can see, be ready (not provisioning, in the trash
or purged), be mountable from its volume under the user's resource policy (``mount-in-session``), and
the permission asked for may not be above the user's own (``wd`` mounts ``rw``). The default is the
user's own, capped at ``rw``; ``rw`` is refused for a folder over its quota. The user's dot-prefixed folders (``.local``, ``.config``, ...) mount automatically at
``/home/work/<name>`` when ready, with the user's permission (``ro`` while over quota). Targets lie
under ``/home/work`` and never clash (``contracts.mounts``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from contracts.mounts import MountError, MountPermission, MountSpec, check_mount_target, check_mount_targets
from contracts.vfolder import VFolderPermission, VFolderStatus
from domain.errors import ForbiddenError, InvalidRequestError
from domain.tenancy.enqueue import QuotaExceededError

__all__ = ["AUTOMATIC_PREFIX", "FolderFacts", "MountRequest", "resolve_mounts"]

AUTOMATIC_PREFIX = "."
"""A user's folders whose name starts with it mount into every session of the user."""


class MountRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One ``--mount NAME[:PATH][:ro|rw]``: a folder name, where (default ``/home/work/NAME``), how."""

    name: str
    target: str | None = None
    permission: MountPermission | None = None


class FolderFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the caller loaded about one folder for the requesting user."""

    folder_id: str
    name: str
    volume: str
    status: VFolderStatus
    permission: VFolderPermission | None
    """The user's effective permission; None when the folder is not theirs nor shared with them."""
    mountable: bool
    """The user's resource policy allows ``mount-in-session`` on the folder's volume."""
    over_quota: bool
    """The folder, or its quota scope, is at or over its limit."""


def resolve_mounts(requested: Sequence[tuple[MountRequest, FolderFacts | None]],
                   automatic: Sequence[FolderFacts] = ()) -> list[MountSpec]:
    """Returns the mounts of a session: each requested folder (``None``: no folder of that name the
    user can see), then the automatic ones not requested explicitly. Raises ``InvalidRequestError``
    (unknown, not ready, bad or clashing target), ``ForbiddenError`` (not shared, not mountable,
    permission above the user's) or ``QuotaExceededError`` (``rw`` over quota)."""
    mounts = [_explicit(request, facts) for request, facts in requested]
    chosen = {mount.folder_id for mount in mounts}
    if len(chosen) < len(mounts):
        raise InvalidRequestError("a folder may be mounted only once per session")
    for facts in automatic:
        if facts.folder_id not in chosen and facts.name.startswith(AUTOMATIC_PREFIX):
            mount = _automatic(facts)
            if mount is not None:
                mounts.append(mount)
    try:
        check_mount_targets(mount.target for mount in mounts)
    except MountError as exc:
        automatic_count = len(mounts) - len(requested)
        hint = f" ({automatic_count} of them your folders named .something, which mount by themselves)" \
            if automatic_count else ""
        raise InvalidRequestError(f"{exc}{hint}") from exc
    return mounts


def _explicit(request: MountRequest, facts: FolderFacts | None) -> MountSpec:
    if facts is None:
        raise InvalidRequestError(f"no folder named {request.name!r} that you can see (your own, your project's, "
                                  "or shared with you)")
    if facts.status is VFolderStatus.TRASHED:
        raise InvalidRequestError(f"folder {facts.name} is in the trash: restore it to mount it")
    if facts.status is not VFolderStatus.READY:
        raise InvalidRequestError(f"folder {facts.name} is not ready (it is {facts.status.value})")
    own = facts.permission
    if own is None:
        raise ForbiddenError(f"folder {facts.name} is not shared with you")
    if not facts.mountable:
        raise ForbiddenError(f"your resource policy does not allow mounting folders of volume {facts.volume}")
    capped: MountPermission = "rw" if own.at_least(VFolderPermission.RW) else "ro"
    permission = request.permission or capped
    if permission == "rw" and capped == "ro":
        raise ForbiddenError(f"folder {facts.name}: you may mount it read-only only (your permission is ro)")
    if permission == "rw" and facts.over_quota:
        raise QuotaExceededError(f"folder {facts.name} is over its quota: mount it read-only (:ro) or free space")
    return MountSpec(folder_id=facts.folder_id, name=facts.name, volume=facts.volume,
                     target=_target(facts.name if request.target is None else request.target), permission=permission)


def _automatic(facts: FolderFacts) -> MountSpec | None:
    """Returns the automatic mount of a dot-folder, None when it cannot be mounted now."""
    if facts.status is not VFolderStatus.READY or facts.permission is None or not facts.mountable:
        return None
    writable = facts.permission.at_least(VFolderPermission.RW) and not facts.over_quota
    return MountSpec(folder_id=facts.folder_id, name=facts.name, volume=facts.volume, target=_target(facts.name),
                     permission="rw" if writable else "ro")


def _target(target: str) -> str:
    try:
        return check_mount_target(target)
    except MountError as exc:
        raise InvalidRequestError(str(exc)) from exc

"""Resolution of a session's folder mounts at enqueue: each requested name found among the folders the
user can see, read from the event store (never stale: a folder made ready a moment ago mounts at
once), then checked by ``domain.vfolder_mounts``.

A name is looked up as the user's own folder, then as a folder of the session's project (both through
their name claims, ``contracts.vfolder.folder_name_claim_id``), then as a folder id, then among
``listed``: the folders a read model says the user sees by that name, and the user's dot-folders
(their current state is read here, so a stale listing never grants anything). A name two shared
folders have is ambiguous: the caller mounts by folder id then. A folder by id, or a project
folder, counts only when the user has a permission on it (an id never reveals a name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from contracts.mounts import MountSpec
from contracts.vfolder import (
    OwnerKind,
    VFolderNameClaimed,
    VFolderPermission,
    VolumePermission,
    folder_name_claim_id,
    is_folder_id,
)
from domain.errors import InvalidRequestError
from domain.vfolder import Actor, VFolderState, evolve, permission_of
from domain.vfolder.names import holds
from domain.vfolder_mounts import AUTOMATIC_PREFIX, FolderFacts, MountRequest, resolve_mounts
from services.common.store import BerthApplication

__all__ = ["ScopeLimits", "session_mounts"]

ScopeLimits = Mapping[str, tuple[int, int]]
"""Quota scope (``user:<name>``, ``project:<name>``) -> (limit in bytes, 0: none; bytes used)."""


def session_mounts(app: BerthApplication, requests: Sequence[MountRequest], actor: Actor, *, project: str,
                   listed: Sequence[str] = (), scopes: ScopeLimits | None = None) -> list[MountSpec]:
    """Returns the mounts of a session requested by ``actor`` in ``project`` (runs on the store's
    threads); raises the domain's errors (``InvalidRequestError``, ``ForbiddenError``,
    ``QuotaExceededError``) naming the folder and the reason."""
    claims = {name: (folder_name_claim_id(OwnerKind.USER, actor.user, name),
                     folder_name_claim_id(OwnerKind.PROJECT, project, name)) for name in {r.name for r in requests}}
    holders = _claimed(app, [claim for pair in claims.values() for claim in pair])
    direct = [r.name for r in requests if is_folder_id(r.name)]
    folders = _folders(app, [*holders.values(), *direct, *listed])
    found = {name: _named(name, [holders.get(claim) for claim in pair], folders, listed, actor, project)
             for name, pair in claims.items()}
    automatic = [folders[i] for i in listed if i in folders and _is_dot_folder(folders[i], actor)]
    facts = {folder.id: _facts(folder, actor, scopes or {}) for folder in [*filter(None, found.values()), *automatic]}
    return resolve_mounts([(r, facts[found[r.name].id] if found[r.name] else None) for r in requests],
                          [facts[folder.id] for folder in automatic])


def _claimed(app: BerthApplication, claim_ids: Sequence[str]) -> dict[str, str]:
    """Returns claim id -> the folder id it names, for the claims that exist."""
    holders: dict[str, str] = {}
    for claim_id in dict.fromkeys(claim_ids):
        last = app.last_event(claim_id)
        if isinstance(last, VFolderNameClaimed):
            holders[claim_id] = last.folder_id
    return holders


def _folders(app: BerthApplication, folder_ids: Sequence[str]) -> dict[str, VFolderState]:
    ids = [i for i in dict.fromkeys(folder_ids) if is_folder_id(i)]
    states = app.current_many(ids, evolve) if ids else {}
    return {i: state for i, state in states.items() if isinstance(state, VFolderState)}


def _named(name: str, claimed: list[str | None], folders: Mapping[str, VFolderState], listed: Sequence[str],
           actor: Actor, project: str) -> VFolderState | None:
    """Returns the folder ``name`` means to ``actor``: own, the session project's, an id, or the one folder so
    named shared with the actor (a project folder only of the session's project, as Backend.AI)."""
    for folder_id in claimed:
        folder = folders.get(folder_id) if folder_id else None
        if folder is not None and holds(folder, name):
            return folder
    if is_folder_id(name):  # by id: only a folder the actor may mount here (ids never leak names)
        folder = folders.get(name)
        return folder if folder is not None and _reachable(folder, actor, project) else None
    shared = [folders[i] for i in dict.fromkeys(listed)
              if i in folders and holds(folders[i], name) and _reachable(folders[i], actor, project)]
    if len(shared) > 1:
        ids = ", ".join(sorted(folder.id for folder in shared))
        raise InvalidRequestError(f"several folders shared with you are named {name!r} ({ids}): mount one by its id")
    return shared[0] if shared else None


def _reachable(folder: VFolderState, actor: Actor, project: str) -> bool:
    """A user folder the actor has a permission on, or a folder of the session's project."""
    if permission_of(folder, actor) is None:
        return False
    return folder.owner_kind is OwnerKind.USER or folder.owner == project


def _is_dot_folder(folder: VFolderState, actor: Actor) -> bool:
    return folder.owner_kind is OwnerKind.USER and folder.owner == actor.user and folder.name.startswith(AUTOMATIC_PREFIX)


def _facts(folder: VFolderState, actor: Actor, scopes: ScopeLimits) -> FolderFacts:
    limit, used = scopes.get(folder.quota_scope, (0, 0))
    over = bool(folder.quota_limit and folder.counted_bytes >= folder.quota_limit) or bool(limit and used >= limit)
    permission: VFolderPermission | None = permission_of(folder, actor)
    return FolderFacts(
        folder_id=folder.id, name=folder.name, volume=folder.volume, status=folder.status, permission=permission,
        mountable=VolumePermission.MOUNT_IN_SESSION in actor.volumes.get(folder.volume, frozenset()),
        over_quota=over,
    )

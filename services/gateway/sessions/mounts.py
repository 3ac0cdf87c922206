"""The mounts of ``createSession``: the input's folders resolved and checked at enqueue
(``services.application.mounts``), with the caller's own dot-folders added.

The caller is the folders' ``Actor``: their user, role, domain, projects and the volumes their keypair
policy allows (``allowed_vfolder_hosts``). A refusal is a GraphQL error naming the folder: BAD_INPUT
(unknown, not ready, in the trash, bad or clashing target), FORBIDDEN (not shared, permission above
the caller's, volume not mountable) or QUOTA (``rw`` over quota).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from contracts.limits import MOUNT_FIELDS
from contracts.mounts import MAX_MOUNTS, MountSpec
from contracts.tenancy import KeypairLimits
from contracts.vfolder import FolderPathError, OwnerKind, check_folder_name, is_folder_id
from domain.tenancy import UserState
from domain.vfolder import Actor
from domain.vfolder_mounts import MountRequest
from projections.queries.mounts import MountCandidateRow, automatic_folders
from projections.queries.rows import VFolderRow
from projections.queries.vfolders import FolderScope, folder, folders_named, storage_usage
from services.application.mounts import ScopeLimits, session_mounts
from services.gateway.auth.principal import Principal
from services.gateway.context import Info
from services.gateway.errors import BAD_INPUT, GatewayError
from services.gateway.limits import checked_choice, checked_value
from services.gateway.readmodels import read, read_caught_up
from services.gateway.resources import Resources
from services.gateway.sessions.types import MountInput

__all__ = ["actor_of", "mount_requests", "resolved_mounts"]

PERMISSIONS = ("ro", "rw")
Candidate = MountCandidateRow | VFolderRow
"""A read-model row of a folder that may be mounted (its id and quota scope are what is used)."""


def mount_requests(inputs: Sequence[MountInput] | None) -> list[MountRequest]:
    """Returns the requests of the input's mounts; BAD_INPUT, before any query, for more than ``MAX_MOUNTS``,
    a name or target over its limit (``contracts.limits.MOUNT_FIELDS``), a name that is no folder id nor a
    valid folder name (``check_folder_name``: no NUL, control characters, ``/``), or a permission other
    than ro or rw."""
    inputs = list(inputs or ())
    if len(inputs) > MAX_MOUNTS:
        raise GatewayError(BAD_INPUT, f"mounts: at most {MAX_MOUNTS} entries, got {len(inputs)}")
    requests: list[MountRequest] = []
    for item in inputs:
        checked_value(MOUNT_FIELDS["name"], item.name)
        if not is_folder_id(item.name):
            try:
                check_folder_name(item.name)
            except FolderPathError as exc:
                raise GatewayError(BAD_INPUT, f"mount {item.name!r}: {exc}") from exc
        if item.target is not None:
            checked_value(MOUNT_FIELDS["target"], item.target)
        permission = checked_choice("mount permission", item.permission).lower() if item.permission is not None else None
        if permission is not None and permission not in PERMISSIONS:
            raise GatewayError(BAD_INPUT, f"mount {item.name}: permission must be ro or rw, got {item.permission!r}")
        requests.append(MountRequest(name=item.name, target=item.target, permission=permission))  # type: ignore[arg-type]
    return requests


def actor_of(principal: Principal, user: UserState | None, limits: KeypairLimits) -> Actor:
    """Returns the caller as the folders' ``Actor``."""
    return Actor(user=principal.user_id, role=principal.role, domain=principal.domain,
                 projects=frozenset(user.projects if user is not None else ()),
                 volumes={volume: frozenset(allowed) for volume, allowed in limits.allowed_vfolder_hosts.items()})


async def resolved_mounts(info: Info, actor: Actor, requests: list[MountRequest], project: str) -> list[MountSpec]:
    """Returns the session's mounts (raises the domain's errors for the caller to map)."""
    resources = info.context.resources
    listed = await _listed(resources, actor, requests)
    if not requests and not listed:
        return []
    scopes = await _scopes(resources.pool, actor, project, listed)
    return await resources.call(session_mounts, resources.vfolders, requests, actor, project=project,
                                listed=[row.folder_id for row in listed], scopes=scopes)


async def _listed(resources: Resources, actor: Actor, requests: list[MountRequest]) -> list[Candidate]:
    """The caller's own dot-folders and the folders of the requested names the caller sees as a user
    (own, shared, projects': never another user's through an admin's reach), by the read models (a
    name they lack, not the caller's own, is looked up again once they caught up with the store:
    ``_named``); their state is read from the store afterwards, so a stale row grants nothing."""
    pool = resources.pool
    rows: list[Candidate] = list(await read(automatic_folders, pool, actor.user))
    scope = FolderScope(user=actor.user, domain=actor.domain, projects=sorted(actor.projects))
    for name in dict.fromkeys(r.name for r in requests):
        if not is_folder_id(name):
            rows += await _named(resources, actor, scope, name)
        elif (row := await read(folder, pool, scope, name)) is not None:  # for its quota scope
            rows.append(row)
    return rows


async def _named(resources: Resources, actor: Actor, scope: FolderScope, name: str) -> list[Candidate]:
    """The folders named ``name`` the read models show the caller; when none, and the caller has no
    folder of that name (its claim, in the store), once they caught up with the store."""
    rows = await read(folders_named, resources.pool, scope, name)
    if rows or await resources.call(resources.vfolders.find, OwnerKind.USER, actor.user, name) is not None:
        return list(rows)
    return list(await read_caught_up(resources, folders_named, resources.pool, scope, name))


async def _scopes(pool: AsyncConnectionPool, actor: Actor, project: str, listed: list[Candidate]) -> ScopeLimits:
    """The limit and usage of the quota scopes a mount may fall in, by the read model."""
    wanted = {f"user:{actor.user}", f"project:{project}", *(row.quota_scope for row in listed)}
    usage = await read(storage_usage, pool, sorted(wanted))
    return {row.quota_scope: (row.limit_bytes, row.usage_bytes) for row in usage}

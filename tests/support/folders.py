"""Folders recorded straight into the event store by the domain's own decisions, as the folder use
cases would record them, in the state a test needs (ready, provisioning, trashed, shared, over quota)."""

from __future__ import annotations

from contracts.tenancy import Role
from contracts.vfolder import OwnerKind, VFolderNameClaimed, VolumePermission, folder_name_claim_id, new_folder_id
from domain.vfolder import Actor, VFolderState, evolve
from domain.vfolder import decide as folders
from domain.vfolder.names import claim
from services.application.context import make_context
from services.application.tenancy import Tenancy

__all__ = ["seed_folder"]

ALL_VOLUMES = {"local": frozenset(VolumePermission)}


def seed_folder(dsn: str, name: str, *, owner: str = "alice", owner_kind: str = "user", domain: str = "default",
                permission: str = "rw", status: str = "ready", shares: dict[str, str] | None = None,
                unshare: tuple[str, ...] = (), quota: int = 0, usage: int = 0) -> str:
    """Records a folder of ``owner`` (a user or a project) and returns its id: ``ready`` (provisioned),
    ``provisioning`` or ``trashed``; shared with ``shares`` (user -> permission), then unshared from
    ``unshare``; with a cap of ``quota`` bytes and ``usage`` bytes used."""
    kind = OwnerKind(owner_kind)
    admin = Actor(user="admin", role=Role.SUPERADMIN, domain=domain, volumes=ALL_VOLUMES)
    actor = Actor(user=owner, domain=domain, volumes=ALL_VOLUMES) if kind is OwnerKind.USER else admin
    folder_id, ctx = new_folder_id(), make_context("test")
    with Tenancy(dsn) as store:
        last = store.last_event(folder_name_claim_id(kind, owner, name))
        events = claim(last if isinstance(last, VFolderNameClaimed) else None, None, owner_kind=kind, owner=owner,
                       name=name, folder_id=folder_id, ctx=ctx)
        events += folders.create(None, folder_id, folders.NewFolder(
            name=name, volume="local", owner_kind=kind, owner=owner, domain=domain, permission=permission),
            actor, ctx, owned=0, max_count=0)
        state: VFolderState | None = None
        steps = [] if status == "provisioning" else [lambda s: folders.provisioned(s, ctx)]
        steps += [lambda s, u=u, p=p: folders.share(s, u, p, admin, ctx, user_domain=domain)
                  for u, p in (shares or {}).items()]
        steps += [lambda s, u=u: folders.unshare(s, u, admin, ctx) for u in unshare]
        if quota:
            steps.append(lambda s: folders.set_quota(s, quota, admin, ctx))
        if usage:
            steps.append(lambda s: folders.usage_measured(s, usage, 1, ctx))
        if status == "trashed":
            steps.append(lambda s: folders.trash(s, admin, ctx))
        for event in events:
            if event.originator_id == folder_id:
                state = evolve(state, event)
        for step in steps:
            assert state is not None
            new = step(state)
            for event in new:
                state = evolve(state, event)
            events += new
        store.record(events)
    return folder_id

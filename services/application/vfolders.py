"""Use cases of the vfolder context: load a folder, decide, save (with its name claim when the
name changes), and the storage service's reports turned into events.

Every change runs under ``retry_on_conflict``: a concurrent change of the folder (or of the
name claim) re-reads and re-decides. A creation or rename saves the claim of the name in the
same transaction, so two folders of one owner never get one name.

Reports (``apply_report``) are idempotent: a report whose id the folder remembers
(``VFolderState.recent_reports``, the events' causation ``report:<id>``), or a fact already
true (provisioned twice, usage unchanged, a purged folder's late content report), records nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from functools import singledispatch

from contracts import vfolder as ev
from contracts.envelope import Event
from contracts.session import SessionRequested
from contracts.tenancy import DEFAULT_POLICY, KeypairLimits, ProjectStorageLimitSet, policy_id, project_id, user_id
from contracts.storage_reports import (
    DirectoryCreatedReport,
    FileMovedReport,
    FilesDeletedReport,
    FileUploadedReport,
    FolderProvisionedReport,
    FolderProvisionFailedReport,
    FolderPurgedReport,
    StorageReport,
    UsageMeasuredReport,
)
from contracts.vfolder import OwnerKind, VFolderNameClaimed, folder_name_claim_id, new_folder_id
from contracts.vfolder_count import VFolderCountChanged, folder_count_id
from domain import tenancy
from domain.emitting import Context, Emitter
from domain.session import SessionState
from domain.session import evolve as session_evolve
from domain.errors import ForbiddenError, InvalidRequestError, NotFoundError
from domain.tenancy import KeypairState, PolicyState, ProjectState, UserState
from domain.vfolder import count as folder_count
from domain.vfolder import decide as d
from domain.vfolder import names
from domain.vfolder.access import Actor, owner_role_matters, toward
from domain.vfolder.in_use import MountingSession
from domain.vfolder.state import VFolderState, evolve
from services.application.long_lived import LONG_LIVED
from services.common.store import BerthApplication, retry_on_conflict

__all__ = ["VFolders", "report_context_id"]

Decision = Callable[[VFolderState | None, Actor], list[Event]]
"""A folder decision, on the folder's current state and the actor as it stands toward it (``facing``)."""
_REQUESTED = SessionRequested.type_name()


def report_context_id(report: StorageReport) -> str:
    """Returns the causation id of the events a report causes: ``report:<report_id>``."""
    return f"report:{report.report_id}"


class VFolders(BerthApplication):
    """Loads folders (and the tenancy facts a decision needs), decides, and saves. A folder's history
    grows with its content (each upload is an event): its state is snapshotted, as are the keypairs'
    and policies' it reads."""

    long_lived = LONG_LIVED

    def get(self, folder_id: str) -> VFolderState | None:
        """Returns the current state of a folder, None when unknown (or not a folder's id)."""
        if not folder_id.startswith("vfolder_"):
            return None
        return self.current(folder_id, evolve)

    def get_as(self, folder_id: str, actor: Actor) -> tuple[VFolderState | None, Actor]:
        """Returns the current state of a folder and the actor as it stands toward it (``facing``)."""
        state = self.get(folder_id)
        return state, self.facing(state, actor)

    # --- who acts ---------------------------------------------------------------------------

    def actor(self, access_key: str) -> Actor:
        """Returns the actor of keypair ``access_key``: its user, role, domain, projects and the
        volume permissions of its resource policy. NotFoundError for an unknown keypair."""
        keypair = self.current(access_key, tenancy.evolve)
        if not isinstance(keypair, KeypairState):
            raise NotFoundError(f"keypair {access_key} not found")
        user = self.current(user_id(keypair.user), tenancy.evolve)
        projects = frozenset(user.projects) if isinstance(user, UserState) else frozenset()
        limits = self.limits(keypair)
        return Actor(user=keypair.user, role=keypair.role, domain=keypair.domain, projects=projects,
                     volumes={volume: frozenset(perms) for volume, perms in limits.allowed_vfolder_hosts.items()},
                     max_vfolder_count=limits.max_vfolder_count)

    def facing(self, state: VFolderState | None, actor: Actor) -> Actor:
        """Returns the actor as it stands toward the folder (``domain.vfolder.access.toward``: a domain admin
        has no reach over a superadmin's personal folder); the owner's user (a snapshot: constant cost) is
        read only when its role matters, and a cached one answers (roles never change)."""
        if state is None or not owner_role_matters(state, actor):
            return actor
        owner = self.peek(user_id(state.owner), tenancy.evolve) or self.current(user_id(state.owner), tenancy.evolve)
        return toward(state, actor, owner.role if isinstance(owner, UserState) else None)

    def limits(self, keypair: KeypairState) -> KeypairLimits:
        """Returns the limits of the keypair's resource policy (none when it is unknown)."""
        policy = self.current(policy_id(keypair.resource_policy or DEFAULT_POLICY), tenancy.evolve)
        return policy.limits if isinstance(policy, PolicyState) else KeypairLimits()

    def _user(self, name: str) -> UserState | None:
        """Returns an active user's state, None when there is no such active user."""
        user = self.current(user_id(name), tenancy.evolve)
        return user if isinstance(user, UserState) and user.is_active else None

    def _user_domain(self, name: str) -> str | None:
        user = self._user(name)
        return user.domain if user is not None else None

    # --- names ------------------------------------------------------------------------------

    def find(self, owner_kind: OwnerKind | str, owner: str, name: str) -> VFolderState | None:
        """Returns the live folder of an owner with ``name`` (by its claim), None when none."""
        last = self.last_event(folder_name_claim_id(owner_kind, owner, name))
        if not isinstance(last, VFolderNameClaimed):
            return None
        holder = self.get(last.folder_id)
        return holder if names.holds(holder, name) else None

    def _claim(self, folder_id: str, owner_kind: OwnerKind, owner: str, name: str, ctx: Context) -> list[Event]:
        last = self.last_event(folder_name_claim_id(owner_kind, owner, name))
        last = last if isinstance(last, VFolderNameClaimed) else None
        holder = self.get(last.folder_id) if last is not None else None
        return names.claim(last, holder, owner_kind=owner_kind, owner=owner, name=name, folder_id=folder_id, ctx=ctx)

    # --- changes ----------------------------------------------------------------------------

    def create(self, actor: Actor, request: d.NewFolder, ctx: Context, *, owned: int,
               folder_id: str | None = None) -> tuple[str, int]:
        """Records a new folder and the claim of its name; returns (its id, the position).
        ``owned``: folders the owner has now by the read models, used only while the owner's count
        (``contracts.vfolder_count``, saved with each creation) was never recorded; the count is
        checked against the actor's ``max_vfolder_count``."""
        folder_id = folder_id or new_folder_id()
        if request.owner_kind is OwnerKind.PROJECT:  # a project's folder lives in the project's domain
            project = self.current(project_id(request.owner), tenancy.evolve)
            if not isinstance(project, ProjectState) or not (actor.manages(project.domain)
                                                             or request.owner in actor.projects):
                raise NotFoundError(f"project {request.owner!r} not found")
            request.domain = project.domain

        def attempt() -> int:
            if request.owner_kind is not OwnerKind.USER:  # max_vfolder_count bounds user folders only
                events = d.create(self.get(folder_id), folder_id, request, actor, ctx, owned=owned)
            else:
                events = self._counted(request.owner, owned, folder_id, ctx,
                                       lambda count: d.create(self.get(folder_id), folder_id, request, actor, ctx,
                                                              owned=count))
            events = self._claim(folder_id, request.owner_kind, request.owner, request.name, ctx) + events
            position = self.record(events)
            assert position is not None
            return position

        return folder_id, retry_on_conflict(attempt)

    def _counted(self, user: str, owned: int, folder_id: str, ctx: Context,
                 decision: Callable[[int], list[Event]]) -> list[Event]:
        """Returns ``decision(count)`` (the user's current folder count) and the count plus one, saved
        together: a concurrent creation conflicts on the count and is decided again."""
        last = self._last_count(user)
        count = folder_count.current(last, owned)
        return decision(count) + folder_count.changed(last, user=user, count=count + 1, folder_id=folder_id, ctx=ctx)

    def _last_count(self, user: str) -> VFolderCountChanged | None:
        last = self.last_event(folder_count_id(user))
        return last if isinstance(last, VFolderCountChanged) else None

    def clone(self, source_id: str, actor: Actor, name: str, ctx: Context, *, owned: int,
              cloneable: bool = False, room: int | None = None) -> tuple[str, int]:
        """Records a new folder of the actor cloned from ``source_id``, when the source's bytes fit in ``room`` (what
        the actor's quota scope has left; None: no limit); returns (its id, position)."""
        folder_id = new_folder_id()
        name = d.valid_name(name)

        def attempt() -> int:
            source = self.get(source_id)
            events = self._counted(actor.user, owned, folder_id, ctx, lambda count: d.clone(
                source, folder_id, name, self.facing(source, actor), ctx, owned=count, cloneable=cloneable, room=room))
            events = self._claim(folder_id, OwnerKind.USER, actor.user, name, ctx) + events
            position = self.record(events)
            assert position is not None
            return position

        return folder_id, retry_on_conflict(attempt)

    def _change(self, folder_id: str, actor: Actor, decision: Decision) -> int:
        """Decides on the folder's current state as ``actor`` stands toward it and saves; returns the
        position (the current one when nothing changed)."""

        def attempt() -> int:
            state = self.get(folder_id)
            return self.record(decision(state, self.facing(state, actor))) or self.position()

        return retry_on_conflict(attempt)

    def rename(self, folder_id: str, name: str, actor: Actor, ctx: Context) -> int:
        def decision(state: VFolderState | None, actor: Actor) -> list[Event]:
            events = d.rename(state, name, actor, ctx)
            if events and state is not None:
                events = self._claim(state.id, state.owner_kind, state.owner, events[0].name, ctx) + events  # type: ignore[attr-defined]
            return events

        return self._change(folder_id, actor, decision)

    def share(self, folder_id: str, user: str, permission: str, actor: Actor, ctx: Context) -> int:
        found = self._user(user)
        domain, projects = (found.domain, frozenset(found.projects)) if found is not None else (None, frozenset())
        return self._change(folder_id, actor, lambda s, a: d.share(s, user, permission, a, ctx, user_domain=domain,
                                                                  user_projects=projects))

    def unshare(self, folder_id: str, user: str, actor: Actor, ctx: Context, *, candidates: Sequence[str] = (),
                seen: int = 0) -> int:
        """Stops sharing the folder with ``user``; refused while the user's live sessions mount it (``mounting``)."""
        return self._change(folder_id, actor,
                            lambda s, a: d.unshare(s, user, a, ctx, self.mounting(folder_id, candidates, seen)))

    def set_permission(self, folder_id: str, user: str, permission: str, actor: Actor, ctx: Context, *,
                       candidates: Sequence[str] = (), seen: int = 0) -> int:
        """A lower permission is refused while the user's live sessions mount the folder (``mounting``)."""
        return self._change(folder_id, actor, lambda s, a: d.set_permission(
            s, user, permission, a, ctx, self.mounting(folder_id, candidates, seen)))

    def invite(self, folder_id: str, invitee: str, permission: str, actor: Actor, ctx: Context) -> tuple[str, int]:
        """Records an invitation; returns (its id, the position)."""
        invitation_id = uuid.uuid4().hex
        domain = self._user_domain(invitee)
        position = self._change(folder_id, actor, lambda s, a: d.invite(s, invitation_id, invitee, permission, a, ctx,
                                                                        invitee_domain=domain))
        return invitation_id, position

    def accept(self, folder_id: str, invitation_id: str, actor: Actor, ctx: Context) -> int:
        return self._change(folder_id, actor, lambda s, a: d.accept(s, invitation_id, a, ctx))

    def reject(self, folder_id: str, invitation_id: str, actor: Actor, ctx: Context) -> int:
        return self._change(folder_id, actor, lambda s, a: d.reject(s, invitation_id, a, ctx))

    def withdraw_invitation(self, folder_id: str, invitation_id: str, actor: Actor, ctx: Context) -> int:
        """Withdraws a pending invitation to the folder (its inviter or a manager); returns the position."""
        return self._change(folder_id, actor, lambda s, a: d.withdraw(s, invitation_id, a, ctx))

    def leave(self, folder_id: str, actor: Actor, ctx: Context, *, candidates: Sequence[str] = (),
              seen: int = 0) -> int:
        """Refused while the actor's live sessions mount the folder (``mounting``)."""
        return self._change(folder_id, actor,
                            lambda s, a: d.leave(s, a, ctx, self.mounting(folder_id, candidates, seen)))

    def trash(self, folder_id: str, actor: Actor, ctx: Context, *, candidates: Sequence[str] = (),
              seen: int = 0) -> int:
        """Moves the folder to the trash; refused while a live session mounts it (``mounting``)."""
        return self._change(folder_id, actor,
                            lambda s, a: d.trash(s, a, ctx, self.mounting(folder_id, candidates, seen)))

    def restore(self, folder_id: str, actor: Actor, ctx: Context) -> int:
        """A folder in the trash keeps its name, so a restore needs no claim."""
        return self._change(folder_id, actor, lambda s, a: d.restore(s, a, ctx))

    def purge(self, folder_id: str, actor: Actor, ctx: Context, *, candidates: Sequence[str] = (),
              seen: int = 0) -> int:
        """Purges a folder in the trash; refused, as ``trash``, while a live session mounts it."""
        def decision(state: VFolderState | None, actor: Actor) -> list[Event]:
            events = d.purge(state, actor, ctx, self.mounting(folder_id, candidates, seen))
            if events and state is not None and state.owner_kind is OwnerKind.USER:
                last = self._last_count(state.owner)
                if last is not None:  # never recorded: the read models' count, read at the next creation
                    events += folder_count.changed(last, user=state.owner, count=last.count - 1, folder_id=folder_id,
                                                   ctx=ctx)
            return events

        return self._change(folder_id, actor, decision)

    def mounting(self, folder_id: str, candidates: Sequence[str], seen: int) -> list[MountingSession]:
        """Returns the live (not ended) sessions that mount the folder, by their current state in the
        store: among ``candidates`` (the ids a read model at position ``seen`` or later gave) and the
        sessions requested after ``seen`` (read from the store's log: what the read model may lack).
        So every session recorded before this call is seen, whatever the read model's lag."""
        later = [event.originator_id for event in self._requested_after(seen)
                 if any(mount.folder_id == folder_id for mount in event.spec.mounts)]
        ids = list(dict.fromkeys([*candidates, *later]))
        states = self.current_many(ids, session_evolve) if ids else {}
        return [MountingSession(id=state.id, name=state.spec.name, user=state.spec.user)
                for state in states.values()
                if isinstance(state, SessionState) and not state.status.is_terminal
                and any(mount.folder_id == folder_id for mount in state.spec.mounts)]

    def _requested_after(self, position: int, page: int = 1000) -> list[SessionRequested]:
        """Returns the ``session.requested`` events after ``position``, in store order."""
        found: list[SessionRequested] = []
        start = position + 1
        while notifications := self.recorder.select_notifications(start=start, limit=page, topics=[_REQUESTED]):
            found += [e for e in map(self.mapper.to_domain_event, notifications) if isinstance(e, SessionRequested)]
            start = notifications[-1].id + 1
        return found

    def set_quota(self, folder_id: str, limit_bytes: int, actor: Actor, ctx: Context) -> int:
        return self._change(folder_id, actor, lambda s, a: d.set_quota(s, limit_bytes, a, ctx))

    def set_project_storage_limit(self, project: str, limit_bytes: int, actor: Actor, ctx: Context) -> int:
        """Sets the bytes a project's folders may hold together (0: no limit); an admin of its domain."""
        if not 0 <= limit_bytes <= d.MAX_QUOTA_BYTES:
            raise InvalidRequestError(f"a quota is 0 (none) to {d.MAX_QUOTA_BYTES} bytes, not {limit_bytes}")

        def attempt() -> int:
            state = self.current(project_id(project), tenancy.evolve)
            if not isinstance(state, ProjectState) or not (actor.manages(state.domain) or project in actor.projects):
                raise NotFoundError(f"project {project} not found")
            if not actor.manages(state.domain):
                raise ForbiddenError("only an admin may set a project's storage limit")
            if state.max_quota_scope_size == limit_bytes:
                return self.position()
            emit = Emitter(state.id, state.version, ctx)
            position = self.record([emit(ProjectStorageLimitSet, max_quota_scope_size=limit_bytes)])
            assert position is not None
            return position

        return retry_on_conflict(attempt)

    # --- storage reports --------------------------------------------------------------------

    def apply_report(self, report: StorageReport, ctx: Context) -> int | None:
        """Records what a storage report says (its ``ctx`` has causation ``report:<id>``); returns
        the position, None when it changed nothing. NotFoundError for an unknown folder,
        InvalidRequestError for a report from another volume than the folder's or a bad path."""

        def attempt() -> int | None:
            state = self.get(report.folder_id)
            if state is None:
                raise NotFoundError(f"folder {report.folder_id} not found")
            if report.volume != state.volume:
                raise InvalidRequestError(
                    f"a report from volume {report.volume!r} about folder {state.id} of volume {state.volume!r}")
            if ctx.metadata.causation_id in state.recent_reports:
                return None
            return self.record(_facts(report, state, ctx))

        return retry_on_conflict(attempt)


@singledispatch
def _facts(report: StorageReport, state: VFolderState, ctx: Context) -> list[Event]:
    raise TypeError(f"no decision for {type(report).__name__}")


@_facts.register
def _(report: FolderProvisionedReport, state: VFolderState, ctx: Context) -> list[Event]:
    return d.provisioned(state, ctx)


@_facts.register
def _(report: FolderProvisionFailedReport, state: VFolderState, ctx: Context) -> list[Event]:
    return d.provision_failed(state, report.reason, ctx)


@_facts.register
def _(report: FolderPurgedReport, state: VFolderState, ctx: Context) -> list[Event]:
    return d.purged(state, ctx)


@_facts.register
def _(report: UsageMeasuredReport, state: VFolderState, ctx: Context) -> list[Event]:
    return d.usage_measured(state, report.bytes, report.files, ctx)


@_facts.register
def _(report: FileUploadedReport, state: VFolderState, ctx: Context) -> list[Event]:
    (path,) = d.check_paths([report.path])
    return d.content_changed(state, ev.VFolderFileUploaded, ctx, path=path, size=report.size, sha256=report.sha256,
                             by=report.by)


@_facts.register
def _(report: FilesDeletedReport, state: VFolderState, ctx: Context) -> list[Event]:
    return d.files_deleted(state, report.paths, report.by, ctx)


@_facts.register
def _(report: FileMovedReport, state: VFolderState, ctx: Context) -> list[Event]:
    src, dst = d.check_paths([report.src, report.dst])
    return d.content_changed(state, ev.VFolderFileMoved, ctx, src=src, dst=dst, by=report.by)


@_facts.register
def _(report: DirectoryCreatedReport, state: VFolderState, ctx: Context) -> list[Event]:
    (path,) = d.check_paths([report.path])
    return d.content_changed(state, ev.VFolderDirectoryCreated, ctx, path=path, by=report.by)

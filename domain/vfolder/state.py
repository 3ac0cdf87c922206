"""The state of one folder and ``evolve``: what its events say, folded.

Status: ``provisioning`` (created, the storage service has not made its directory yet) →
``ready`` (or ``error``); ``trashed`` ↔ back to what it was; ``purging`` (purge requested,
from the trash only) → ``purged`` (directory gone, name free; the history stays).
``recent_reports`` keeps the ids of the last storage reports applied (their events' causation
id) so that a report delivered again after JetStream's deduplication window is a no-op.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from contracts import vfolder as ev
from contracts.envelope import Event
from contracts.vfolder import OwnerKind, UsageMode, VFolderPermission, VFolderStatus

__all__ = ["Invitation", "RECENT_REPORTS", "VFolderState", "evolve", "replay"]

RECENT_REPORTS = 256
"""Storage report ids a folder remembers (a duplicate among them records nothing)."""


class Invitation(msgspec.Struct, frozen=True, kw_only=True):
    invitation_id: str
    invitee: str
    permission: VFolderPermission
    inviter: str
    state: str = "pending"
    """``pending``, ``accepted``, ``rejected`` or ``withdrawn`` (ended unanswered: withdrawn, or superseded
    by a share, unshare or permission change concerning the invitee)."""


class VFolderState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    name: str
    volume: str
    owner_kind: OwnerKind
    owner: str
    domain: str
    quota_scope: str
    usage_mode: UsageMode
    permission: VFolderPermission
    cloneable: bool
    clone_of: str | None
    created_by: str
    status: VFolderStatus = VFolderStatus.PROVISIONING
    provisioned: bool = False
    """The directory was reported created (the status a restore returns to is then ``ready``)."""
    failure: str | None = None
    shares: dict[str, VFolderPermission] = {}
    """User -> permission: shared directly, or an accepted invitation."""
    invitations: tuple[Invitation, ...] = ()
    quota_limit: int = 0
    usage_bytes: int = 0
    usage_files: int = 0
    uploaded_bytes: int = 0
    """The bytes of the files uploaded since the last usage measure: quotas count them until it comes."""
    recent_reports: tuple[str, ...] = ()

    @property
    def counted_bytes(self) -> int:
        """The bytes quotas count: the last measure and the files uploaded since."""
        return self.usage_bytes + self.uploaded_bytes

    @property
    def is_live(self) -> bool:
        """Not purged nor being purged: the folder holds its name."""
        return self.status not in (VFolderStatus.PURGING, VFolderStatus.PURGED)

    def invitation(self, invitation_id: str) -> Invitation | None:
        return next((i for i in self.invitations if i.invitation_id == invitation_id), None)

    def pending_invitation_of(self, user: str) -> Invitation | None:
        return next((i for i in self.invitations if i.invitee == user and i.state == "pending"), None)


def evolve(state: VFolderState | None, event: Event) -> VFolderState:
    """Returns the state after ``event``."""
    new = _apply(event, state)
    causation = event.metadata.causation_id
    if causation and causation.startswith("report:") and causation not in new.recent_reports:
        new = msgspec.structs.replace(new, recent_reports=(*new.recent_reports, causation)[-RECENT_REPORTS:])
    return new


def replay(events: list[Event]) -> VFolderState | None:
    state: VFolderState | None = None
    for event in events:
        state = evolve(state, event)
    return state


@singledispatch
def _apply(event: Event, state: VFolderState | None) -> VFolderState:
    raise TypeError(f"a folder cannot apply {type(event).__name__}")


def _bump(state: VFolderState | None, event: Event, **changes: object) -> VFolderState:
    assert state is not None, f"{type(event).__name__} before the folder was created"
    return msgspec.structs.replace(state, version=event.originator_version, **changes)


@_apply.register
def _(event: ev.VFolderCreated, state: VFolderState | None) -> VFolderState:
    return VFolderState(
        id=event.originator_id, version=event.originator_version, name=event.name, volume=event.volume,
        owner_kind=event.owner_kind, owner=event.owner, domain=event.domain, quota_scope=event.quota_scope,
        usage_mode=event.usage_mode, permission=event.permission, cloneable=event.cloneable,
        clone_of=event.clone_of, created_by=event.by,
    )


@_apply.register
def _(event: ev.VFolderProvisioned, state: VFolderState | None) -> VFolderState:
    assert state is not None
    status = VFolderStatus.READY if state.status in (VFolderStatus.PROVISIONING, VFolderStatus.ERROR) else state.status
    return _bump(state, event, provisioned=True, status=status, failure=None)


@_apply.register
def _(event: ev.VFolderProvisionFailed, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, status=VFolderStatus.ERROR, failure=event.reason)


@_apply.register
def _(event: ev.VFolderRenamed, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, name=event.name)


@_apply.register
def _(event: ev.VFolderShared, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, shares={**state.shares, event.user: event.permission})


@_apply.register
def _(event: ev.VFolderPermissionChanged, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, shares={**state.shares, event.user: event.permission})


def _without(state: VFolderState, user: str) -> dict[str, VFolderPermission]:
    return {u: p for u, p in state.shares.items() if u != user}


@_apply.register
def _(event: ev.VFolderUnshared, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, shares=_without(state, event.user))


@_apply.register
def _(event: ev.VFolderLeft, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, shares=_without(state, event.user))


@_apply.register
def _(event: ev.VFolderInvited, state: VFolderState | None) -> VFolderState:
    assert state is not None
    invitation = Invitation(invitation_id=event.invitation_id, invitee=event.invitee, permission=event.permission,
                            inviter=event.by)
    return _bump(state, event, invitations=(*state.invitations, invitation))


def _answer(state: VFolderState, invitation_id: str, answer: str) -> tuple[Invitation, ...]:
    return tuple(msgspec.structs.replace(i, state=answer) if i.invitation_id == invitation_id else i
                 for i in state.invitations)


@_apply.register
def _(event: ev.VFolderInvitationAccepted, state: VFolderState | None) -> VFolderState:
    assert state is not None
    invitation = state.invitation(event.invitation_id)
    assert invitation is not None
    return _bump(state, event, invitations=_answer(state, event.invitation_id, "accepted"),
                 shares={**state.shares, invitation.invitee: invitation.permission})


@_apply.register
def _(event: ev.VFolderInvitationRejected, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, invitations=_answer(state, event.invitation_id, "rejected"))


@_apply.register
def _(event: ev.VFolderInvitationWithdrawn, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, invitations=_answer(state, event.invitation_id, "withdrawn"))


@_apply.register
def _(event: ev.VFolderTrashed, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, status=VFolderStatus.TRASHED)


@_apply.register
def _(event: ev.VFolderRestored, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, status=VFolderStatus.READY if state.provisioned else VFolderStatus.ERROR)


@_apply.register
def _(event: ev.VFolderPurgeRequested, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, status=VFolderStatus.PURGING)


@_apply.register
def _(event: ev.VFolderPurged, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, status=VFolderStatus.PURGED, usage_bytes=0, usage_files=0, uploaded_bytes=0)


@_apply.register
def _(event: ev.VFolderQuotaSet, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, quota_limit=event.limit_bytes)


@_apply.register
def _(event: ev.VFolderUsageMeasured, state: VFolderState | None) -> VFolderState:
    return _bump(state, event, usage_bytes=event.bytes, usage_files=event.files, uploaded_bytes=0)


@_apply.register
def _(event: ev.VFolderFileUploaded, state: VFolderState | None) -> VFolderState:
    assert state is not None
    return _bump(state, event, uploaded_bytes=state.uploaded_bytes + event.size)


@_apply.register(ev.VFolderFilesDeleted)
@_apply.register(ev.VFolderFileMoved)
@_apply.register(ev.VFolderDirectoryCreated)
def _(event: Event, state: VFolderState | None) -> VFolderState:
    return _bump(state, event)

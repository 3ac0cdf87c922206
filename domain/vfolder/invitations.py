"""Invitations to a user folder (Backend.AI's): the owner (or a manager) invites a user of the
folder's domain, who accepts (the folder is then shared with them at the invited permission) or
rejects; until then the inviter or a manager may withdraw it.

A pending invitation never outlives a later decision about its invitee: a share, an unshare or a
permission change concerning them withdraws it in the same decision (``superseded``), so an old
invitation accepted afterwards cannot give back what was taken away or override what was set.
Accepting is refused while the folder is already shared with the invitee (a history recorded
before that rule can hold both).
"""

from __future__ import annotations

from contracts import vfolder as ev
from contracts.envelope import Event
from contracts.vfolder import OwnerKind, VolumePermission, WithdrawalReason
from domain.emitting import Context, Emitter
from domain.errors import AlreadyExistsError, ForbiddenError, InvalidRequestError, InvalidTransitionError, NotFoundError
from domain.vfolder.access import (
    Actor, check_not_self_granted, check_volume, may_manage, may_see, require_manager,
)
from domain.vfolder.checks import check_live, check_other_user, valid_permission
from domain.vfolder.state import Invitation, VFolderState

__all__ = ["accept", "invite", "reject", "superseded", "withdraw"]


def _emit(state: VFolderState, ctx: Context) -> Emitter:
    return Emitter(state.id, state.version, ctx)


def invite(state: VFolderState | None, invitation_id: str, invitee: str, permission: str, actor: Actor,
           ctx: Context, *, invitee_domain: str | None) -> list[Event]:
    """Invites ``invitee`` to a user folder (Backend.AI: invitations are for personal folders)."""
    state = require_manager(state, actor, "invite others")
    check_not_self_granted(state, actor, invitee, "invite")
    check_volume(actor, state.volume, VolumePermission.INVITE_OTHERS)
    check_live(state, "invite others")
    if state.owner_kind is not OwnerKind.USER:
        raise InvalidRequestError("invitations are for user folders: share a project folder instead")
    wanted = valid_permission(permission)
    check_other_user(state, invitee, invitee_domain)
    if invitee in state.shares:
        raise AlreadyExistsError(f"folder {state.name!r} is already shared with {invitee!r}")
    if state.pending_invitation_of(invitee) is not None:
        raise AlreadyExistsError(f"{invitee!r} already has a pending invitation to folder {state.name!r}")
    return [_emit(state, ctx)(ev.VFolderInvited, invitation_id=invitation_id, invitee=invitee, permission=wanted,
                              by=actor.user)]


def _pending(state: VFolderState | None, invitation_id: str, actor: Actor) -> tuple[VFolderState, Invitation]:
    invitation = state.invitation(invitation_id) if state is not None else None
    if state is None or invitation is None or invitation.invitee != actor.user:
        raise InvalidRequestError(f"no invitation {invitation_id!r} for you")
    return state, invitation


def accept(state: VFolderState | None, invitation_id: str, actor: Actor, ctx: Context) -> list[Event]:
    """The invitee accepts: the folder is shared with them at the invited permission. Accepting
    again is a no-op; an answered or withdrawn one cannot be accepted, nor one to a folder already
    shared with the invitee (the share decided later stands)."""
    state, invitation = _pending(state, invitation_id, actor)
    if invitation.state == "accepted":
        return []
    if invitation.state != "pending":
        raise InvalidTransitionError(f"invitation {invitation_id} was {invitation.state}")
    check_live(state, "accept the invitation")
    shared = state.shares.get(actor.user)
    if shared is not None:
        raise InvalidTransitionError(f"folder {state.name!r} is already shared with you ({shared.value}): invitation "
                                     f"{invitation_id} no longer applies (reject it)")
    return [_emit(state, ctx)(ev.VFolderInvitationAccepted, invitation_id=invitation_id, invitee=actor.user)]


def reject(state: VFolderState | None, invitation_id: str, actor: Actor, ctx: Context) -> list[Event]:
    """The invitee rejects a pending invitation. Rejecting again is a no-op."""
    state, invitation = _pending(state, invitation_id, actor)
    if invitation.state == "rejected":
        return []
    if invitation.state != "pending":
        raise InvalidTransitionError(f"invitation {invitation_id} was {invitation.state}")
    return [_emit(state, ctx)(ev.VFolderInvitationRejected, invitation_id=invitation_id, invitee=actor.user)]


def withdraw(state: VFolderState | None, invitation_id: str, actor: Actor, ctx: Context) -> list[Event]:
    """The inviter, or a manager of the folder, withdraws a pending invitation: it can no longer be
    accepted. Withdrawing again is a no-op; an answered one is refused. NotFoundError for a folder the
    actor may not see or an invitation the folder never had."""
    if state is None or not may_see(state, actor):
        raise NotFoundError("folder not found")
    invitation = state.invitation(invitation_id)
    if invitation is None:
        raise NotFoundError(f"no invitation {invitation_id!r} to folder {state.name!r}")
    if invitation.inviter != actor.user and not may_manage(state, actor):
        raise ForbiddenError(f"only the inviter or a manager of folder {state.name!r} may withdraw an invitation")
    if invitation.state == "withdrawn":
        return []
    if invitation.state != "pending":
        raise InvalidTransitionError(f"invitation {invitation_id} was {invitation.state}: only a pending one is "
                                     "withdrawn")
    return [_emit(state, ctx)(ev.VFolderInvitationWithdrawn, invitation_id=invitation_id, invitee=invitation.invitee,
                              reason=WithdrawalReason.WITHDRAWN, by=actor.user)]


def superseded(state: VFolderState, user: str, reason: WithdrawalReason, emit: Emitter, by: str) -> list[Event]:
    """Returns the withdrawal of every pending invitation of ``user`` to the folder, which a share,
    unshare or permission change concerning them (``reason``, decided by ``by``) supersedes; numbered
    by ``emit`` after that decision's own events."""
    return [emit(ev.VFolderInvitationWithdrawn, invitation_id=i.invitation_id, invitee=user, reason=reason, by=by)
            for i in state.invitations if i.invitee == user and i.state == "pending"]

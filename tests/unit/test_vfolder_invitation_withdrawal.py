"""Invitations to a folder end when a later decision concerns their invitee, and can be withdrawn:
a stale invitation never gives back what an unshare took away nor overrides a share decided after
it (the pure VFolder aggregate: decide, then evolve)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest

from contracts import vfolder as ev
from contracts.catalog import decode_event, encode_event
from contracts.envelope import Event, Metadata
from contracts.tenancy import Role
from contracts.vfolder import VFolderPermission, VolumePermission, WithdrawalReason
from domain.emitting import Context, Emitter
from domain.errors import ForbiddenError, InvalidTransitionError, NotFoundError
from domain.vfolder import decide as d
from domain.vfolder.access import Actor, permission_of
from domain.vfolder.state import VFolderState, evolve, replay

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALL = frozenset(VolumePermission)
RO, RW = VFolderPermission.RO, VFolderPermission.RW


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(now=NOW, metadata=Metadata(actor="t", correlation_id="c"),
                   new_id=lambda: uuid.UUID(int=next(counter)))


def actor(user: str, role: Role = Role.USER, domain: str = "default") -> Actor:
    return Actor(user=user, role=role, domain=domain, volumes={"local": ALL})


ALICE, BOB, CAROL = actor("alice"), actor("bob"), actor("carol")
ADMIN, FOREIGN = actor("dana", Role.ADMIN), actor("erin", Role.ADMIN, domain="lab")


def apply(state: VFolderState | None, events: list[Event]) -> VFolderState:
    for event in events:
        state = evolve(state, event)
    assert state is not None
    return state


def folder() -> VFolderState:
    request = d.NewFolder(name="data", volume="local", owner_kind="user", owner="alice", domain="default")
    state = apply(None, d.create(None, "vfolder_" + "a" * 32, request, ALICE, ctx(), owned=0))
    return apply(state, d.provisioned(state, ctx()))


def invited(state: VFolderState, invitation_id: str = "inv1", user: str = "bob", permission: str = "rw"
            ) -> VFolderState:
    return apply(state, d.invite(state, invitation_id, user, permission, ALICE, ctx(), invitee_domain="default"))


def withdrawals(events: list[Event]) -> list[tuple[str, str, WithdrawalReason]]:
    return [(e.invitation_id, e.invitee, e.reason) for e in events if isinstance(e, ev.VFolderInvitationWithdrawn)]


def test_an_unshare_ends_an_older_invitation_which_then_gives_nothing() -> None:
    state = invited(folder())  # alice invites bob rw
    shared = d.share(state, "bob", "ro", ALICE, ctx(), user_domain="default")  # then shares it ro
    assert withdrawals(shared) == [("inv1", "bob", WithdrawalReason.SHARED)]
    state = apply(state, shared)
    state = apply(state, d.unshare(state, "bob", ALICE, ctx()))  # then unshares him
    assert permission_of(state, BOB) is None
    assert state.invitation("inv1").state == "withdrawn"  # type: ignore[union-attr]
    with pytest.raises(InvalidTransitionError, match="withdrawn"):
        d.accept(state, "inv1", BOB, ctx())  # the old invitation gives back nothing, least of all rw
    assert permission_of(state, BOB) is None


def test_a_share_decided_after_an_invitation_stands() -> None:
    state = invited(folder())
    events = d.share(state, "bob", "ro", ALICE, ctx(), user_domain="default")
    assert [type(e) for e in events] == [ev.VFolderShared, ev.VFolderInvitationWithdrawn]
    assert [e.originator_version for e in events] == [state.version + 1, state.version + 2]
    state = apply(state, events)
    with pytest.raises(InvalidTransitionError):
        d.accept(state, "inv1", BOB, ctx())
    assert permission_of(state, BOB) is RO
    assert d.share(state, "bob", "ro", ALICE, ctx(), user_domain="default") == []  # nothing left to end


@pytest.mark.parametrize("change, reason", [
    (lambda s: d.unshare(s, "bob", ALICE, ctx()), WithdrawalReason.UNSHARED),
    (lambda s: d.share(s, "bob", "rw", ALICE, ctx(), user_domain="default"), WithdrawalReason.SHARED),
])
def test_a_decision_about_an_invited_user_not_shared_with_ends_their_invitation(change, reason) -> None:
    state = invited(folder())
    assert withdrawals(change(state)) == [("inv1", "bob", reason)]


def test_a_history_recorded_before_the_rule_cannot_be_exploited() -> None:
    """An invitation left pending beside a later share (as recorded before shares ended invitations):
    accepting it is refused; a permission change or an unshare now ends it."""
    state = invited(folder())
    emit = Emitter(state.id, state.version, ctx())
    state = apply(state, [emit(ev.VFolderShared, user="bob", permission=RO, by="alice")])
    assert state.invitation("inv1").state == "pending"  # type: ignore[union-attr]
    with pytest.raises(InvalidTransitionError, match="already shared with you"):
        d.accept(state, "inv1", BOB, ctx())
    same = d.set_permission(state, "bob", "ro", ALICE, ctx())  # the same permission: the invitation still ends
    assert withdrawals(same) == [("inv1", "bob", WithdrawalReason.PERMISSION_CHANGED)] and len(same) == 1
    events = d.set_permission(state, "bob", "wd", ALICE, ctx())
    assert withdrawals(events) == [("inv1", "bob", WithdrawalReason.PERMISSION_CHANGED)]
    state = apply(state, events)
    assert permission_of(state, BOB) is VFolderPermission.WD and state.pending_invitation_of("bob") is None


def test_other_users_invitations_are_left_alone() -> None:
    state = invited(invited(folder()), "inv2", "carol", "ro")
    state = apply(state, d.share(state, "bob", "ro", ALICE, ctx(), user_domain="default"))
    assert state.pending_invitation_of("carol") is not None
    state = apply(state, d.accept(state, "inv2", CAROL, ctx()))
    assert permission_of(state, CAROL) is RO


def test_the_inviter_or_a_manager_withdraws_a_pending_invitation() -> None:
    state = invited(folder())
    events = d.withdraw(state, "inv1", ALICE, ctx())
    assert withdrawals(events) == [("inv1", "bob", WithdrawalReason.WITHDRAWN)] and events[0].by == "alice"
    after = apply(state, events)
    assert d.withdraw(after, "inv1", ALICE, ctx()) == []  # again: a no-op
    with pytest.raises(InvalidTransitionError, match="withdrawn"):
        d.accept(after, "inv1", BOB, ctx())
    with pytest.raises(InvalidTransitionError, match="withdrawn"):
        d.reject(after, "inv1", BOB, ctx())
    assert withdrawals(d.withdraw(state, "inv1", ADMIN, ctx())) == [("inv1", "bob", WithdrawalReason.WITHDRAWN)]
    assert d.invite(after, "inv3", "bob", "ro", ALICE, ctx(), invitee_domain="default")  # may invite anew


def test_a_bad_withdrawal_is_refused_and_changes_nothing() -> None:
    state = invited(folder())
    with pytest.raises(NotFoundError, match="no invitation"):
        d.withdraw(state, "nope", ALICE, ctx())
    for stranger in (BOB, FOREIGN):  # the invitee does not see the folder yet (it rejects instead)
        with pytest.raises(NotFoundError):
            d.withdraw(state, "inv1", stranger, ctx())
    shared = apply(state, d.share(state, "carol", "rw", ALICE, ctx(), user_domain="default"))
    with pytest.raises(ForbiddenError, match="inviter or a manager"):
        d.withdraw(shared, "inv1", CAROL, ctx())  # sees it, neither invited bob nor manages it
    with pytest.raises(NotFoundError):
        d.withdraw(None, "inv1", ALICE, ctx())
    accepted = apply(state, d.accept(state, "inv1", BOB, ctx()))
    with pytest.raises(InvalidTransitionError, match="was accepted"):
        d.withdraw(accepted, "inv1", ALICE, ctx())
    assert permission_of(accepted, BOB) is RW


def test_the_withdrawal_travels_and_replays() -> None:
    state = invited(folder())
    (event,) = d.withdraw(state, "inv1", ALICE, ctx())
    assert decode_event(encode_event(event)) == event
    history = [*_history(state), event]
    assert replay(history) == apply(state, [event])


def _history(state: VFolderState) -> list[Event]:
    request = d.NewFolder(name="data", volume="local", owner_kind="user", owner="alice", domain="default")
    created = d.create(None, state.id, request, ALICE, ctx(), owned=0)
    provisioned = d.provisioned(apply(None, created), ctx())
    before = apply(None, created + provisioned)
    return created + provisioned + d.invite(before, "inv1", "bob", "rw", ALICE, ctx(), invitee_domain="default")

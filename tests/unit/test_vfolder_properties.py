"""Hypothesis properties of the VFolder aggregate: whatever sequence of requests five callers
make (owner, a peer, a project member, the domain's admin, another domain's admin), a refused
request records nothing, the owner keeps wd, another domain's admin never sees the folder, nobody
has a permission without ownership, a share or project membership, and a purged folder stays purged
with nothing recorded after it."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import Metadata
from contracts.tenancy import Role
from contracts.vfolder import VFolderFileUploaded, VFolderPermission, VFolderStatus, VolumePermission
from domain.emitting import Context
from domain.errors import DomainError
from domain.vfolder import decide as d
from domain.vfolder.access import Actor, may_see, permission_of
from domain.vfolder.state import VFolderState, evolve

ALL = frozenset(VolumePermission)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ACTORS = {
    "alice": Actor(user="alice", domain="default", projects=frozenset({"ml"}), volumes={"local": ALL}),
    "bob": Actor(user="bob", domain="default", volumes={"local": ALL}),
    "carol": Actor(user="carol", domain="default", projects=frozenset({"ml"}), volumes={"local": ALL}),
    "root": Actor(user="root", role=Role.ADMIN, domain="default", volumes={"local": ALL}),
    "eve": Actor(user="eve", role=Role.ADMIN, domain="lab", volumes={"local": ALL}),
}
DOMAINS = {"alice": "default", "bob": "default", "carol": "default", "root": "default", "eve": "lab"}
PERMISSIONS = st.sampled_from(["ro", "rw", "wd"])
USERS = st.sampled_from(sorted(ACTORS))
REQUESTS = st.one_of(
    st.tuples(st.just("rename"), USERS, st.sampled_from(["a", "b", "data"])),
    st.tuples(st.just("share"), USERS, USERS, PERMISSIONS),
    st.tuples(st.just("unshare"), USERS, USERS),
    st.tuples(st.just("set_permission"), USERS, USERS, PERMISSIONS),
    st.tuples(st.just("invite"), USERS, USERS, PERMISSIONS),
    st.tuples(st.just("accept"), USERS),
    st.tuples(st.just("reject"), USERS),
    st.tuples(st.just("leave"), USERS),
    st.tuples(st.just("trash"), USERS),
    st.tuples(st.just("restore"), USERS),
    st.tuples(st.just("purge"), USERS),
    st.tuples(st.just("purged"),),
    st.tuples(st.just("quota"), USERS, st.integers(-5, 5000)),
    st.tuples(st.just("upload"),),
)


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(now=NOW, metadata=Metadata(actor="t", correlation_id="c"), new_id=lambda: uuid.UUID(int=next(counter)))


def created(kind: str) -> VFolderState:
    owner = "alice" if kind == "user" else "ml"
    request = d.NewFolder(name="data", volume="local", owner_kind=kind, owner=owner, domain="default", permission="ro")
    creator = ACTORS["alice"] if kind == "user" else ACTORS["root"]
    state = None
    for event in d.create(None, "vfolder_" + "a" * 32, request, creator, ctx(), owned=0):
        state = evolve(state, event)
    assert state is not None
    for event in d.provisioned(state, ctx()):
        state = evolve(state, event)
    return state


def decide(state: VFolderState, request: tuple, invitations: list[str]) -> list:  # type: ignore[type-arg]
    op, *args = request
    c = ctx()
    if op == "rename":
        return d.rename(state, args[1], ACTORS[args[0]], c)
    if op == "share":
        return d.share(state, args[1], args[2], ACTORS[args[0]], c, user_domain=DOMAINS[args[1]],
                       user_projects=ACTORS[args[1]].projects)
    if op == "unshare":
        return d.unshare(state, args[1], ACTORS[args[0]], c)
    if op == "set_permission":
        return d.set_permission(state, args[1], args[2], ACTORS[args[0]], c)
    if op == "invite":
        invitation = f"inv{len(invitations)}"
        events = d.invite(state, invitation, args[1], args[2], ACTORS[args[0]], c, invitee_domain=DOMAINS[args[1]])
        invitations.append(invitation)
        return events
    if op in ("accept", "reject"):
        pending = [i.invitation_id for i in state.invitations if i.invitee == args[0]]
        return getattr(d, op)(state, pending[-1] if pending else "none", ACTORS[args[0]], c)
    if op == "leave":
        return d.leave(state, ACTORS[args[0]], c)
    if op in ("trash", "restore", "purge"):
        return getattr(d, op)(state, ACTORS[args[0]], c)
    if op == "purged":
        return d.purged(state, c)
    if op == "quota":
        return d.set_quota(state, args[1], ACTORS[args[0]], c)
    return d.content_changed(state, VFolderFileUploaded, c, path="f", size=1, sha256="0" * 64, by="alice")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["user", "project"]), st.lists(REQUESTS, max_size=40))
def test_any_sequence_of_requests_keeps_the_access_rules(kind: str, requests: list[tuple]) -> None:  # type: ignore[type-arg]
    state = created(kind)
    invitations: list[str] = []
    for request in requests:
        before = state
        try:
            events = decide(state, request, invitations)
        except DomainError:
            events = []
            assert state == before
        if before.status is VFolderStatus.PURGED:
            assert events == [], f"{request} recorded something after the purge"
        for event in events:
            assert event.originator_version == state.version + 1
            state = evolve(state, event)
        if kind == "user":
            assert permission_of(state, ACTORS["alice"]) is VFolderPermission.WD
        assert not may_see(state, ACTORS["eve"]) or "eve" in state.shares
        for name, actor in ACTORS.items():
            own = permission_of(state, actor)
            if own is not None:
                assert (kind == "user" and name == "alice") or name in state.shares or (
                    kind == "project" and "ml" in actor.projects)
        if kind == "project":
            assert all("ml" in ACTORS[user].projects for user in state.shares)
        assert set(state.shares) <= {n for n, dom in DOMAINS.items() if dom == state.domain}

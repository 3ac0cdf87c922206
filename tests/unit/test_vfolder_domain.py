"""The VFolder aggregate, pure: permissions (ro < rw < wd, user and project ownership, shares,
invitations), trash / restore / purge, clone, quota, names, storage facts and the path
validator of ``contracts.vfolder`` (Hypothesis)."""

from __future__ import annotations

import datetime as dt
import itertools
import posixpath
import unicodedata
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import vfolder as ev
from contracts.catalog import encode_event
from contracts.envelope import Event, Metadata
from contracts.tenancy import Role
from contracts.travel import MAX_EVENT_BYTES
from contracts.vfolder import (
    FolderPathError,
    VFolderPermission,
    VFolderStatus,
    VolumePermission,
    check_folder_name,
    check_folder_path,
    folder_name_claim_id,
    is_folder_id,
    new_folder_id,
)
from domain.emitting import Context
from domain.errors import AlreadyExistsError, ForbiddenError, InvalidRequestError, InvalidTransitionError, NotFoundError
from domain.vfolder import decide as d
from domain.vfolder import names
from domain.vfolder.access import Actor, permission_of
from domain.vfolder.in_use import MAX_SESSIONS_NAMED, MountingSession
from domain.vfolder.state import VFolderState, evolve
from services.common.snapshots import codec_of

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALL = frozenset(VolumePermission)


def ctx(causation: str | None = None) -> Context:
    counter = itertools.count(1)
    return Context(now=NOW, metadata=Metadata(actor="t", correlation_id="c", causation_id=causation),
                   new_id=lambda: uuid.UUID(int=next(counter)))


def actor(user: str, role: Role = Role.USER, projects: tuple[str, ...] = ("ml",), domain: str = "default",
          volumes: frozenset[VolumePermission] = ALL) -> Actor:
    return Actor(user=user, role=role, domain=domain, projects=frozenset(projects), volumes={"local": volumes})


ALICE, BOB, CAROL = actor("alice"), actor("bob"), actor("carol", projects=())
ADMIN = actor("root", Role.ADMIN, projects=())


def apply(state: VFolderState | None, events: list[Event]) -> VFolderState:
    for event in events:
        state = evolve(state, event)
    assert state is not None
    return state


def folder(owner: Actor = ALICE, *, kind: str = "user", owner_name: str | None = None, permission: str = "rw",
           cloneable: bool = False, ready: bool = True) -> VFolderState:
    request = d.NewFolder(name="data", volume="local", owner_kind=kind, owner=owner_name or owner.user,
                          domain="default", permission=permission, cloneable=cloneable)
    state = apply(None, d.create(None, "vfolder_" + "a" * 32, request, owner, ctx(), owned=0))
    return apply(state, d.provisioned(state, ctx())) if ready else state


def test_ids_and_claims_are_subject_tokens() -> None:
    assert is_folder_id(new_folder_id()) and not is_folder_id("vfolder_xyz")
    assert folder_name_claim_id("user", "a", "x/y") != folder_name_claim_id("project", "a", "x/y")


def test_a_created_folder_provisions_then_is_ready_and_its_owner_has_wd() -> None:
    state = folder(ready=False)
    assert state.status is VFolderStatus.PROVISIONING and state.quota_scope == "user:alice"
    state = apply(state, d.provisioned(state, ctx()))
    assert state.status is VFolderStatus.READY
    assert d.provisioned(state, ctx()) == []  # a duplicate report is a no-op
    assert permission_of(state, ALICE) is VFolderPermission.WD and permission_of(state, BOB) is None


def test_a_failed_provision_is_an_error_with_its_reason() -> None:
    state = folder(ready=False)
    state = apply(state, d.provision_failed(state, "disk full", ctx()))
    assert (state.status, state.failure) == (VFolderStatus.ERROR, "disk full")


def test_a_user_creates_only_their_own_folders_within_max_vfolder_count() -> None:
    request = d.NewFolder(name="x", volume="local", owner_kind="user", owner="bob", domain="default")
    with pytest.raises(ForbiddenError):
        d.create(None, "vfolder_" + "b" * 32, request, ALICE, ctx(), owned=0)
    mine = d.NewFolder(name="x", volume="local", owner_kind="user", owner="alice", domain="default")
    limited = Actor(user="alice", domain="default", volumes={"local": ALL}, max_vfolder_count=3)
    with pytest.raises(InvalidRequestError, match="max_vfolder_count 3"):
        d.create(None, "vfolder_" + "b" * 32, mine, limited, ctx(), owned=3)
    assert d.create(None, "vfolder_" + "b" * 32, mine, limited, ctx(), owned=2)
    assert d.create(None, "vfolder_" + "b" * 32, mine, ALICE, ctx(), owned=1000)  # 0: no limit


def test_project_folders_are_created_by_admins_and_members_get_the_default_permission() -> None:
    request = d.NewFolder(name="shared", volume="local", owner_kind="project", owner="ml", domain="default",
                          permission="ro")
    with pytest.raises(ForbiddenError, match="admin"):
        d.create(None, "vfolder_" + "c" * 32, request, ALICE, ctx(), owned=0)
    state = folder(ADMIN, kind="project", owner_name="ml", permission="ro")
    assert state.quota_scope == "project:ml"
    assert permission_of(state, ALICE) is VFolderPermission.RO and permission_of(state, CAROL) is None
    state = apply(state, d.share(state, "alice", "rw", ADMIN, ctx(), user_domain="default",
                                 user_projects=frozenset({"ml"})))
    assert permission_of(state, ALICE) is VFolderPermission.RW  # a per-user override
    with pytest.raises(InvalidRequestError, match="not a member"):
        d.share(state, "carol", "ro", ADMIN, ctx(), user_domain="default")


def test_the_volume_policy_is_checked() -> None:
    request = d.NewFolder(name="x", volume="local", owner_kind="user", owner="alice", domain="default")
    limited = actor("alice", volumes=frozenset({VolumePermission.MOUNT_IN_SESSION}))
    with pytest.raises(ForbiddenError, match="create-vfolder"):
        d.create(None, "vfolder_" + "b" * 32, request, limited, ctx(), owned=0)
    other = d.NewFolder(name="x", volume="elsewhere", owner_kind="user", owner="alice", domain="default")
    with pytest.raises(ForbiddenError, match="elsewhere"):
        d.create(None, "vfolder_" + "b" * 32, other, ALICE, ctx(), owned=0)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", " x", "x\x00", "x" * 65, "tab\there"])
def test_bad_folder_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequestError):
        d.valid_name(name)


def test_dot_names_are_allowed_and_names_are_nfc() -> None:
    assert check_folder_name(".config") == ".config"
    assert check_folder_name("e\u0301") == "\u00e9"


def test_sharing_changing_and_unsharing_a_user_folder() -> None:
    state = folder()
    with pytest.raises(NotFoundError):
        d.share(state, "carol", "ro", BOB, ctx(), user_domain="default")  # bob cannot even see it
    with pytest.raises(InvalidRequestError, match="no user"):
        d.share(state, "ghost", "ro", ALICE, ctx(), user_domain=None)
    with pytest.raises(InvalidRequestError, match="permission"):
        d.share(state, "bob", "admin", ALICE, ctx(), user_domain="default")
    state = apply(state, d.share(state, "bob", "ro", ALICE, ctx(), user_domain="default"))
    assert permission_of(state, BOB) is VFolderPermission.RO
    assert d.share(state, "bob", "ro", ALICE, ctx(), user_domain="default") == []
    with pytest.raises(ForbiddenError):  # bob sees it, but does not manage it
        d.rename(state, "mine", BOB, ctx())
    (changed,) = d.set_permission(state, "bob", "rw", ALICE, ctx())
    assert isinstance(changed, ev.VFolderPermissionChanged)
    state = apply(state, [changed])
    assert permission_of(state, BOB) is VFolderPermission.RW
    state = apply(state, d.unshare(state, "bob", ALICE, ctx()))
    assert permission_of(state, BOB) is None and d.unshare(state, "bob", ALICE, ctx()) == []


def test_invitations_accept_reject_and_leave() -> None:
    state = folder()
    state = apply(state, d.invite(state, "inv1", "bob", "rw", ALICE, ctx(), invitee_domain="default"))
    with pytest.raises(AlreadyExistsError, match="pending"):
        d.invite(state, "inv2", "bob", "ro", ALICE, ctx(), invitee_domain="default")
    with pytest.raises(InvalidRequestError, match="no invitation"):
        d.accept(state, "inv1", CAROL, ctx())  # not carol's
    assert permission_of(state, BOB) is None  # pending: nothing yet
    state = apply(state, d.accept(state, "inv1", BOB, ctx()))
    assert permission_of(state, BOB) is VFolderPermission.RW
    assert d.accept(state, "inv1", BOB, ctx()) == []  # again: a no-op
    with pytest.raises(InvalidTransitionError):
        d.reject(state, "inv1", BOB, ctx())
    state = apply(state, d.leave(state, BOB, ctx()))
    assert permission_of(state, BOB) is None
    with pytest.raises(InvalidTransitionError, match="own it"):
        d.leave(state, ALICE, ctx())
    with pytest.raises(NotFoundError):
        d.leave(state, CAROL, ctx())  # cannot see it
    state = apply(state, d.invite(state, "inv3", "carol", "ro", ALICE, ctx(), invitee_domain="default"))
    state = apply(state, d.reject(state, "inv3", CAROL, ctx()))
    assert permission_of(state, CAROL) is None and state.invitation("inv3").state == "rejected"  # type: ignore[union-attr]


def test_invitations_are_for_user_folders_of_the_same_domain() -> None:
    project = folder(ADMIN, kind="project", owner_name="ml")
    with pytest.raises(InvalidRequestError, match="user folders"):
        d.invite(project, "i", "bob", "ro", ADMIN, ctx(), invitee_domain="default")
    with pytest.raises(InvalidRequestError, match="no user"):
        d.invite(folder(), "i", "eve", "ro", ALICE, ctx(), invitee_domain="other")


def test_trash_restore_trash_purge() -> None:
    state = folder()
    with pytest.raises(InvalidTransitionError, match="trash first"):
        d.purge(state, ALICE, ctx())
    state = apply(state, d.trash(state, ALICE, ctx()))
    assert state.status is VFolderStatus.TRASHED and d.trash(state, ALICE, ctx()) == []
    with pytest.raises(InvalidTransitionError):
        d.rename(state, "x", ALICE, ctx())
    state = apply(state, d.restore(state, ALICE, ctx()))
    assert state.status is VFolderStatus.READY
    state = apply(state, d.trash(state, ALICE, ctx()))
    state = apply(state, d.purge(state, ALICE, ctx()))
    assert state.status is VFolderStatus.PURGING and not state.is_live
    assert d.purge(state, ALICE, ctx()) == []
    state = apply(state, d.purged(state, ctx()))
    assert state.status is VFolderStatus.PURGED and d.purged(state, ctx()) == []
    assert d.content_changed(state, ev.VFolderDirectoryCreated, ctx(), path="x", by="") == []


def test_a_folder_mounted_by_a_live_session_is_neither_trashed_nor_purged() -> None:
    state = folder()
    mine = MountingSession(id="s1", name="train", user="alice")
    others = [MountingSession(id=f"b{i}", name="secret", user="bob") for i in range(2)]
    with pytest.raises(InvalidTransitionError, match=r"mounted by live session\(s\) train \(s1\), 2 of other users: "
                                                     "move it to the trash once they have ended") as refused:
        d.trash(state, ALICE, ctx(), [mine, *others])
    assert "secret" not in str(refused.value) and "b0" not in str(refused.value)  # bob's sessions are not alice's
    many = [MountingSession(id=f"s{i}", name=f"n{i}", user="alice") for i in range(MAX_SESSIONS_NAMED + 2)]
    with pytest.raises(InvalidTransitionError, match="2 more of yours"):
        d.trash(state, ALICE, ctx(), many)
    state = apply(state, d.trash(state, ALICE, ctx(), []))  # once they ended
    assert d.trash(state, ALICE, ctx(), [mine]) == []  # already in the trash: nothing to refuse
    with pytest.raises(InvalidTransitionError, match=r"train \(s1\): purge it once"):
        d.purge(state, ALICE, ctx(), [mine])  # mounted before the trash, still running
    assert d.purge(state, ALICE, ctx(), [])


def test_only_members_with_wd_or_managers_trash_and_a_reader_cannot() -> None:
    state = folder()
    state = apply(state, d.share(state, "bob", "wd", ALICE, ctx(), user_domain="default"))
    with pytest.raises(ForbiddenError):
        d.trash(state, BOB, ctx())  # management is the owner's or an admin's
    assert d.trash(state, ADMIN, ctx())


def test_clone_needs_a_cloneable_ready_readable_source() -> None:
    source = folder(cloneable=False)
    with pytest.raises(ForbiddenError, match="not cloneable"):
        d.clone(source, "vfolder_" + "d" * 32, "copy", ALICE, ctx(), owned=1)
    source = folder(cloneable=True)
    with pytest.raises(NotFoundError):
        d.clone(source, "vfolder_" + "d" * 32, "copy", BOB, ctx(), owned=0)
    (created,) = d.clone(source, "vfolder_" + "d" * 32, "copy", ALICE, ctx(), owned=1)
    assert isinstance(created, ev.VFolderCreated) and created.clone_of == source.id and created.owner == "alice"
    with pytest.raises(InvalidTransitionError):
        d.clone(folder(cloneable=True, ready=False), "vfolder_" + "d" * 32, "copy", ALICE, ctx(), owned=1)


def test_quota_is_set_by_admins_within_bounds() -> None:
    state = folder()
    with pytest.raises(ForbiddenError, match="admin"):
        d.set_quota(state, 10, ALICE, ctx())
    with pytest.raises(InvalidRequestError):
        d.set_quota(state, -1, ADMIN, ctx())
    state = apply(state, d.set_quota(state, 1000, ADMIN, ctx()))
    assert state.quota_limit == 1000 and d.set_quota(state, 1000, ADMIN, ctx()) == []


def test_usage_is_recorded_only_when_it_changed() -> None:
    state = folder()
    state = apply(state, d.usage_measured(state, 10, 1, ctx()))
    assert (state.usage_bytes, state.usage_files) == (10, 1)
    assert d.usage_measured(state, 10, 1, ctx()) == []


def test_a_report_applied_is_remembered_by_its_causation() -> None:
    state = folder()
    state = apply(state, d.content_changed(state, ev.VFolderDirectoryCreated, ctx("report:r1"), path="a", by="alice"))
    assert "report:r1" in state.recent_reports


def test_a_name_is_claimed_unless_a_live_folder_of_the_owner_holds_it() -> None:
    holder = folder()
    (claimed,) = names.claim(None, None, owner_kind=holder.owner_kind, owner="alice", name="data",
                             folder_id=holder.id, ctx=ctx())
    with pytest.raises(AlreadyExistsError, match="'data'"):
        names.claim(claimed, holder, owner_kind=holder.owner_kind, owner="alice", name="data",
                    folder_id="vfolder_" + "e" * 32, ctx=ctx())
    renamed = apply(holder, d.rename(holder, "other", ALICE, ctx()))
    (again,) = names.claim(claimed, renamed, owner_kind=holder.owner_kind, owner="alice", name="data",
                           folder_id="vfolder_" + "e" * 32, ctx=ctx())
    assert again.originator_version == 2


def test_a_long_deletion_is_split_over_events_that_each_travel() -> None:
    state = folder()
    paths = [f"dir/{i:04d}/" + "x" * 200 for i in range(2000)]
    events = d.files_deleted(state, paths, "alice", ctx())
    assert len(events) > 1 and [p for e in events for p in e.paths] == paths  # type: ignore[attr-defined]
    assert [e.originator_version for e in events] == list(range(state.version + 1, state.version + 1 + len(events)))
    assert all(len(encode_event(e)) < MAX_EVENT_BYTES for e in events)
    assert d.files_deleted(state, [], "alice", ctx()) == []


def test_a_folder_state_survives_its_snapshot() -> None:
    state = folder()
    state = apply(state, d.share(state, "bob", "rw", ALICE, ctx(), user_domain="default"))
    state = apply(state, d.invite(state, "inv1", "carol", "ro", ALICE, ctx(), invitee_domain="default"))
    state = apply(state, d.content_changed(state, ev.VFolderDirectoryCreated, ctx("report:r1"), path="a", by="alice"))
    codec = codec_of(evolve)
    snapshot = codec.encode(state)
    assert snapshot is not None and codec.decode(snapshot) == state


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x", "a/../../b", "/etc/passwd", "a\x00b", "a//b", "./.", "x/./y", "",
                                  "a/" + "b" * 256, "a\nb"])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(FolderPathError):
        check_folder_path(path)


def test_paths_are_normalised() -> None:
    assert check_folder_path("a/b/") == "a/b"
    assert check_folder_path("caf\u0065\u0301") == "caf\u00e9"
    assert check_folder_path("/", allow_root=True) == "" and check_folder_path(".", allow_root=True) == ""


@given(st.text(max_size=300))
def test_an_accepted_path_never_leaves_its_folder(path: str) -> None:
    try:
        normal = check_folder_path(path, allow_root=True)
    except FolderPathError:
        return
    assert "\x00" not in normal and not normal.startswith("/")
    assert normal == unicodedata.normalize("NFC", normal)
    assert normal.split("/") == [p for p in normal.split("/") if p not in ("", ".", "..")] or normal == ""
    joined = posixpath.normpath(posixpath.join("/root", normal))
    assert joined == "/root" or joined.startswith("/root/")
    assert check_folder_path(normal, allow_root=True) == normal  # idempotent

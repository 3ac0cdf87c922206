"""Enqueue-time resolution of folder mounts (``domain.vfolder_mounts``) and mount targets
(``contracts.mounts``): pure, over the facts loaded for the requesting user."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.agent import KernelAssigned
from contracts.catalog import decode_event, encode_event
from contracts.mounts import MAX_MOUNTS, MountError, MountSpec, check_mount_target, check_mount_targets
from contracts.session import SessionSpec
from contracts.vfolder import VFolderPermission, VFolderStatus
from domain.errors import ForbiddenError, InvalidRequestError
from domain.tenancy.enqueue import QuotaExceededError
from domain.vfolder_mounts import FolderFacts, MountRequest, resolve_mounts
from services.application.context import make_context

RO, RW, WD = VFolderPermission.RO, VFolderPermission.RW, VFolderPermission.WD


def facts(name: str = "data", **fields: object) -> FolderFacts:
    values: dict[str, object] = {"folder_id": f"vfolder_{abs(hash(name)) % 16**32:032x}", "name": name,
                                 "volume": "local", "status": VFolderStatus.READY, "permission": WD,
                                 "mountable": True, "over_quota": False}
    values.update(fields)
    return FolderFacts(**values)  # type: ignore[arg-type]


def one(request: MountRequest, found: FolderFacts | None) -> MountSpec:
    (mount,) = resolve_mounts([(request, found)])
    return mount


@pytest.mark.parametrize("own, asked, mounted", [
    (WD, None, "rw"), (RW, None, "rw"), (RO, None, "ro"), (WD, "ro", "ro"), (RW, "rw", "rw"), (RO, "ro", "ro"),
])
def test_the_permission_is_the_users_own_capped_at_rw_or_less_when_asked(own, asked, mounted) -> None:
    mount = one(MountRequest(name="data", permission=asked), facts(permission=own))
    assert (mount.permission, mount.target, mount.volume, mount.name) == (mounted, "/home/work/data", "local", "data")


def test_rw_above_the_users_permission_is_forbidden() -> None:
    with pytest.raises(ForbiddenError, match="read-only only"):
        one(MountRequest(name="data", permission="rw"), facts(permission=RO))


@pytest.mark.parametrize("found, error, fragment", [
    (None, InvalidRequestError, "no folder named 'data' that you can see"),
    (facts(status=VFolderStatus.TRASHED), InvalidRequestError, "in the trash"),
    (facts(status=VFolderStatus.PROVISIONING), InvalidRequestError, "not ready (it is provisioning)"),
    (facts(status=VFolderStatus.PURGED), InvalidRequestError, "not ready (it is purged)"),
    (facts(permission=None), ForbiddenError, "not shared with you"),
    (facts(mountable=False), ForbiddenError, "does not allow mounting folders of volume local"),
])
def test_a_folder_that_cannot_be_mounted_is_refused_with_the_reason(found, error, fragment) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        one(MountRequest(name="data"), found)


def test_over_quota_a_folder_mounts_ro_but_not_rw() -> None:
    assert one(MountRequest(name="data", permission="ro"), facts(over_quota=True)).permission == "ro"
    with pytest.raises(QuotaExceededError, match="over its quota"):
        one(MountRequest(name="data"), facts(over_quota=True))


@pytest.mark.parametrize("target, resolved", [
    ("x", "/home/work/x"), ("a/b/", "/home/work/a/b"), ("/home/work/data/v1", "/home/work/data/v1"),
    ("données", "/home/work/données"),
])
def test_targets_lie_under_home_work(target: str, resolved: str) -> None:
    assert one(MountRequest(name="data", target=target), facts()).target == resolved


@pytest.mark.parametrize("target", [
    "/etc", "/home/work", "/home/work/", "/home/workx/a", "../x", "a/../../x", "/home/work/../etc", "a//b", "./a",
    "a\x00b", "a:b", "a\nb", "", "x" * 256, "/home/work/" + "a/" * 2100,
])
def test_a_bad_target_is_refused(target: str) -> None:
    with pytest.raises(InvalidRequestError):
        one(MountRequest(name="data", target=target), facts())


def test_clashing_targets_and_a_folder_twice_are_refused() -> None:
    a, b = facts("a"), facts("b")
    with pytest.raises(InvalidRequestError, match="two mounts at /home/work/x"):
        resolve_mounts([(MountRequest(name="a", target="x"), a), (MountRequest(name="b", target="x"), b)])
    with pytest.raises(InvalidRequestError, match="/home/work/x/y is inside /home/work/x"):
        resolve_mounts([(MountRequest(name="a", target="x/y"), a), (MountRequest(name="b", target="x"), b)])
    with pytest.raises(InvalidRequestError, match="only once"):
        resolve_mounts([(MountRequest(name="a"), a), (MountRequest(name="a", target="z"), a)])


def test_dot_folders_mount_automatically_when_ready_and_not_asked_for_explicitly() -> None:
    local, config, trashed, shared = facts(".local"), facts(".config", over_quota=True), \
        facts(".cache", status=VFolderStatus.TRASHED), facts(".ro", permission=RO)
    mounts = resolve_mounts([(MountRequest(name=".local", target="elsewhere", permission="ro"), local)],
                            [local, config, trashed, shared, facts("plain")])
    assert [(m.name, m.target, m.permission) for m in mounts] == [
        (".local", "/home/work/elsewhere", "ro"), (".config", "/home/work/.config", "ro"),
        (".ro", "/home/work/.ro", "ro"),
    ]


def test_too_many_mounts_are_refused() -> None:
    folders = [facts(f"f{i}") for i in range(MAX_MOUNTS + 1)]
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_MOUNTS} mounts"):
        resolve_mounts([(MountRequest(name=f.name), f) for f in folders])
    dots = [facts(f".d{i}") for i in range(MAX_MOUNTS)]
    with pytest.raises(InvalidRequestError, match=f"got {MAX_MOUNTS + 1} \\({MAX_MOUNTS} of them your folders named"):
        resolve_mounts([(MountRequest(name="data"), facts())], dots)


def test_history_from_before_mounts_decodes_with_none() -> None:
    old = b'{"name":"s","image":"i","kernels":[]}'
    assert msgspec.json.decode(old, type=SessionSpec).mounts == []
    ctx = make_context("test")
    assigned = KernelAssigned(event_id=ctx.new_id(), originator_id="a1", originator_version=1, timestamp=ctx.now,
                              metadata=ctx.metadata, kernel_id="k", session_id="s", image="i", slots={})
    stored = msgspec.json.decode(encode_event(assigned))
    del stored["mounts"]
    decoded = decode_event(msgspec.json.encode(stored))
    assert isinstance(decoded, KernelAssigned) and decoded.mounts == []


@given(st.text(max_size=60))
def test_an_accepted_target_is_normalised_and_under_home_work(text: str) -> None:
    try:
        target = check_mount_target(text)
    except MountError:
        return
    assert target.startswith("/home/work/") and "/../" not in target + "/" and "//" not in target
    assert check_mount_target(target) == target
    check_mount_targets([target])

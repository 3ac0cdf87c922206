"""The directories a walk creates (an upload to a nested path) belong to the owner it is given,
as the uploaded file does: run as root, a kernel user must be able to write in them through its
rw mount. Needs root (to give files away)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.vfolder import new_folder_id
from services.storage.paths import PathError, open_dir, open_parent
from services.storage.volume import PosixVolume

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving directories to another user needs root")

KERNEL = (12345, 23456)
"""A non-root uid and gid, as ``BERTH_KERNEL_USER`` gives them."""


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "folder"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield root, fd
    finally:
        os.close(fd)


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_the_parents_an_upload_creates_belong_to_the_owner(folder: tuple[Path, int]) -> None:
    root, fd = folder
    with open_parent(fd, ("data", "sub", "x.bin"), create=True, owner=KERNEL) as (parent, name):
        assert name == "x.bin"
        assert os.fstat(parent).st_uid == KERNEL[0]
    assert _owner(root / "data") == KERNEL
    assert _owner(root / "data" / "sub") == KERNEL
    assert _owner(root) == (0, 0)  # the walk's start is not its to give


def test_only_the_directories_it_creates_are_given(folder: tuple[Path, int]) -> None:
    root, fd = folder
    (root / "data").mkdir()
    with open_dir(fd, ("data", "sub", "deeper"), create=True, owner=KERNEL):
        pass
    assert _owner(root / "data") == (0, 0)  # there before: left as it was
    assert _owner(root / "data" / "sub") == KERNEL and _owner(root / "data" / "sub" / "deeper") == KERNEL


def test_without_an_owner_the_directories_stay_the_services(folder: tuple[Path, int]) -> None:
    root, fd = folder
    with open_parent(fd, ("a", "b", "f"), create=True):
        pass
    assert _owner(root / "a") == (0, 0) and _owner(root / "a" / "b") == (0, 0)


def test_a_planted_link_is_neither_followed_nor_given(folder: tuple[Path, int], tmp_path: Path) -> None:
    root, fd = folder
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "data")
    with pytest.raises(PathError), open_parent(fd, ("data", "sub", "x.bin"), create=True, owner=KERNEL):
        pass
    assert _owner(outside) == (0, 0) and not (outside / "sub").exists()
    assert _owner(root / "data") == (0, 0)  # lstat: the link itself


def test_a_volumes_put_gives_the_parents_it_creates_to_the_kernels_owner(tmp_path: Path) -> None:
    volume = PosixVolume("local", tmp_path / "vol", owner=KERNEL)
    folder = new_folder_id()
    volume.create(folder)
    (volume.uploads / "u1").write_bytes(b"data")
    upload_dir = os.open(volume.uploads, os.O_RDONLY | os.O_DIRECTORY)
    try:
        volume.put(folder, "data/sub/x.bin", upload_dir, "u1")  # before: data/ and data/sub/ were root's
    finally:
        os.close(upload_dir)
    placed = volume.folder_path(folder)
    assert [_owner(placed / p) for p in ("data", "data/sub", "data/sub/x.bin")] == [KERNEL] * 3

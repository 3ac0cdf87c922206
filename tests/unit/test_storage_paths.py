"""Safe folder paths: malformed text refused; no walk leaves the folder or follows a symlink,
including links planted from inside (a kernel writing through a rw mount), in every volume operation:
open (download), list, mkdir, remove, move (source and destination) and put (an upload's last step)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.storage.paths import PathError, split_path
from services.storage.volume import PosixVolume, VolumeError

FOLDER = "vfolder_" + "a" * 32


@pytest.mark.parametrize("bad", ["/etc/passwd", "..", "a/../b", "./a", "a//b", "a\x00b", "a/\x01",
                                 "x" * 256, "a/" * 2100, "../\u2025", "a/\u002e\u002e"])
def test_a_malformed_path_is_refused(bad):
    with pytest.raises(PathError):
        split_path(bad)


@given(st.text(max_size=60))
def test_split_path_accepts_only_safe_relative_components(text):
    try:
        parts = split_path(text)
    except PathError:
        return
    joined = "/".join(parts)
    assert not joined.startswith("/")
    assert all(p not in ("", ".", "..") and "\x00" not in p for p in parts)
    assert unicodedata.normalize("NFC", joined) == joined
    assert split_path(joined) == parts


@pytest.fixture
def volume(tmp_path: Path) -> PosixVolume:
    vol = PosixVolume("local", tmp_path / "vol")
    vol.create(FOLDER)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "topsecret").write_text("s3cret")
    (tmp_path / "secret" / "OUTSIDE-MARKER").write_text("")
    return vol


def _plant_links(volume: PosixVolume, outside: Path) -> None:
    """What a container could do through a rw mount: links to the host and to its root."""
    root = volume.folder_path(FOLDER)
    (root / "d").mkdir()
    os.symlink(outside, root / "escape")
    os.symlink(outside / "topsecret", root / "d" / "file-link")
    os.symlink("/", root / "d" / "rootlink")
    os.symlink("..", root / "up")


NAMES = st.sampled_from(["escape", "d", "file-link", "rootlink", "up", "topsecret", "x", "..", ".", "", "/", "etc", "passwd",
                         "\u2025", "\uff0e\uff0e", "e\u0301", "\x00", "\uff0f", "//"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(NAMES, min_size=1, max_size=5))
def test_no_path_reaches_outside_through_planted_links(volume, tmp_path, parts):
    outside = tmp_path / "secret"
    volume.delete(FOLDER)  # each example starts from the planted links (a move or remove changes them)
    volume.create(FOLDER)
    _plant_links(volume, outside)
    path = "/".join(parts)
    try:
        fd = volume.open_file(FOLDER, path)
    except (PathError, OSError):
        pass
    else:
        try:
            assert os.read(fd, 100) != b"s3cret"
        finally:
            os.close(fd)
    try:
        entries = volume.list(FOLDER, path)
    except (PathError, OSError):
        entries = []
    assert "OUTSIDE-MARKER" not in {e.name for e in entries}
    (volume.folder_path(FOLDER) / "m.txt").write_text("moved")
    (volume.uploads / "u.part").write_text("uploaded")
    for op in (lambda: volume.mkdir(FOLDER, path + "/new"), lambda: volume.remove(FOLDER, path + "/topsecret"),
               lambda: volume.move(FOLDER, "m.txt", path + "/new"), lambda: volume.move(FOLDER, path, "taken"),
               lambda: _put(volume, path + "/new"), lambda: _put(volume, path)):
        try:
            op()
        except (PathError, VolumeError, OSError):
            pass
    assert (outside / "topsecret").read_text() == "s3cret"
    assert sorted(p.name for p in outside.iterdir()) == ["OUTSIDE-MARKER", "topsecret"]
    assert not (tmp_path / "taken").exists() and not (tmp_path / "new").exists()


def _put(volume: PosixVolume, path: str) -> None:
    """A finished upload moved into the folder at ``path`` (as the storage service does on the last byte)."""
    fd = os.open(volume.uploads, os.O_RDONLY | os.O_DIRECTORY)
    try:
        volume.put(FOLDER, path, fd, "u.part")
    finally:
        os.close(fd)


def test_links_are_listed_as_links_and_never_read(volume, tmp_path):
    _plant_links(volume, tmp_path / "secret")
    kinds = {e.name: e.type for e in volume.list(FOLDER, "")}
    assert kinds == {"d": "dir", "escape": "link", "up": "link"}
    for path in ("escape/topsecret", "d/file-link", "d/rootlink/etc/passwd", "up/secret/topsecret"):
        with pytest.raises(PathError):
            os.close(volume.open_file(FOLDER, path))
    assert volume.usage(FOLDER) == (0, 0)


def test_a_clone_copies_files_not_links(volume, tmp_path):
    _plant_links(volume, tmp_path / "secret")
    (volume.folder_path(FOLDER) / "d" / "data.txt").write_text("hello")
    clone = "vfolder_" + "b" * 32
    volume.clone(FOLDER, clone)
    volume.clone(FOLDER, clone)  # idempotent
    assert (volume.folder_path(clone) / "d" / "data.txt").read_text() == "hello"
    assert not any(p.is_symlink() for p in volume.folder_path(clone).rglob("*"))
    assert volume.usage(clone) == (5, 1)


def test_move_mkdir_remove_and_delete_are_idempotent_and_bounded(volume):
    volume.mkdir(FOLDER, "a/b")
    volume.mkdir(FOLDER, "a/b")
    volume.move(FOLDER, "a/b", "c")
    with pytest.raises(PathError):
        volume.move(FOLDER, "a", "a/inner")
    assert [e.name for e in volume.list(FOLDER, "")] == ["a", "c"]
    assert volume.remove(FOLDER, "a") is True
    assert volume.remove(FOLDER, "a") is False
    assert volume.remove(FOLDER, "a/b/c") is False, "a directory on the way missing: the path names nothing"
    volume.delete(FOLDER)
    volume.delete(FOLDER)
    assert not volume.exists(FOLDER)


def test_a_path_through_a_file_or_a_link_names_nothing_to_remove(volume):
    """``f.txt/x`` (a file on the way) was a PathError, 400: the gateway's vfolderDeleteFiles failed BAD_INPUT after
    deleting the paths before it. The walk follows no link, so a link on the way is no directory either."""
    root = volume.folder_path(FOLDER)
    (root / "d").mkdir()
    (root / "d" / "x").write_text("kept")
    (root / "f.txt").write_text("kept")
    os.symlink("d", root / "link")
    assert volume.remove(FOLDER, "f.txt/x") is False
    assert volume.remove(FOLDER, "f.txt/x/y") is False
    assert volume.remove(FOLDER, "link/x") is False
    assert (root / "f.txt").read_text() == (root / "d" / "x").read_text() == "kept"
    with pytest.raises(PathError):  # what is not a path at all stays refused
        volume.remove(FOLDER, "a/../b")

"""``services.common.tree_walk``: walks and deletes of the trees kernels write (the storage service's folders, the
agent's kernel directories), a loop rather than a recursion, at any depth (``os.fwalk`` and ``shutil.rmtree`` raised
RecursionError about 1,000 levels down) with a bounded number of fds (they kept one per level: a chain 100,000 deep
exhausts 1,024), never through a link, not even one swapped for a directory of the chain while the walk is below
it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common.tree_walk import WINDOW, TooDeepError, remove_tree, walk
from tests.support.deep_trees import BOTTOM, DIR_FLAGS, deep_tmp, fd_limit, make_chain, open_fds

__all__ = ["deep_tmp"]  # a fixture of the tests


def _fd(path: Path) -> int:
    return os.open(path, DIR_FLAGS)


def _mixed_tree(root: Path, outside: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "f.txt").write_text("f")
    (root / "a" / "b" / "c" / "g.txt").write_text("gg")
    (root / "empty").mkdir()
    (root / "top.txt").write_text("t")
    os.symlink(outside, root / "a" / "out")  # a link to a directory: a file of the listing, never walked
    os.symlink("f.txt", root / "a" / "f-link")
    os.mkfifo(root / "a" / "b" / "p")


def test_a_walk_lists_what_os_fwalk_lists(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    _mixed_tree(root, outside)
    fd = _fd(root)
    try:
        expected = set()
        for top, dirs, files, top_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            links = [name for name in dirs if os.path.islink(os.path.join(root, top, name))]
            expected.add(("" if top == "." else top[2:], tuple(sorted(set(dirs) - set(links))),
                          tuple(sorted(files + links))))  # os.fwalk lists a link to a directory in dirs (not walked)
        walked = {(v.path(), tuple(sorted(v.dirs)), tuple(sorted(v.files))) for v in walk(fd)}
    finally:
        os.close(fd)
    assert walked == expected
    assert ("a", ("b",), ("f-link", "f.txt", "out")) in walked


@pytest.mark.parametrize("depth", [2_000, 20_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_a_chain_thousands_deep_is_walked_to_its_bottom_with_few_fds(deep_tmp: Path, depth: int) -> None:
    make_chain(deep_tmp, depth)
    fd = _fd(deep_tmp)
    before = open_fds()
    try:
        with fd_limit(spare=WINDOW + 8):  # one fd per level (os.fwalk): EMFILE
            seen = [(v.depth, v.files) for v in walk(fd)]
    finally:
        os.close(fd)
    assert len(seen) == depth + 1 and seen[-1] == (depth, ["bottom.txt"])
    assert open_fds() == before - 1


def test_a_bounded_walk_refuses_a_deeper_tree(tmp_path: Path) -> None:
    make_chain(tmp_path, 30)
    fd = _fd(tmp_path)
    before = open_fds()
    try:
        assert max(v.depth for v in walk(fd, max_depth=30)) == 30
        with pytest.raises(TooDeepError, match="deeper than 29 levels \\(in 'd'\\)"):
            for _ in walk(fd, max_depth=29):
                pass
    finally:
        os.close(fd)
    assert open_fds() == before - 1


def test_a_directory_swapped_for_a_link_before_it_is_entered_is_not_walked(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    (outside / "deep").mkdir(parents=True)
    (outside / "secret").write_text("s")
    fd = _fd(root)
    try:
        walked = []
        for v in walk(fd):
            walked.append((v.path(), v.files))
            if v.depth == 0:  # listed as a directory; a kernel renames a link over it before the walk goes in
                os.rename(root / "a", root / "a-moved")
                os.symlink(outside, root / "a")
    finally:
        os.close(fd)
    assert walked == [("", [])]


def test_a_walk_coming_back_up_follows_no_link_swapped_into_the_chain(tmp_path: Path) -> None:
    """40 levels (deeper than the window of open fds), each with a sibling ``s`` holding a file: while the
    walk is at the bottom, a kernel moves level 10 to the top (its ``..`` is no longer level 9: level 9 is
    opened again by names from the root) and renames a link to a directory outside over level 5. The walk
    goes on up the levels it was in, through 10 (the same directories), then leaves levels 5 to 9 (no
    longer reached from the root but through the link) and finishes at level 4, never outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "d" / "d").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside")
    level = root
    for _ in range(40):
        (level / "s").mkdir(parents=True)
        (level / "s" / "f.txt").write_text("x")
        level = level / "d"
    level.mkdir()
    fd = _fd(root)
    before = open_fds()
    try:
        with fd_limit(spare=WINDOW + 8):
            walked = []
            for v in walk(fd):
                v.dirs.sort()  # "d" before "s": the chain first
                walked.append((v.depth, v.name, v.files))
                if v.depth == 40 and v.name == "d":
                    os.rename(root / "/".join(["d"] * 10), root / "moved")
                    os.rename(root / "/".join(["d"] * 5), root / "away")
                    os.symlink(outside, root / "/".join(["d"] * 5))
    finally:
        os.close(fd)
    assert open_fds() == before - 1
    siblings = sorted(depth - 1 for depth, name, files in walked if name == "s")
    assert siblings == list(range(0, 5)) + list(range(10, 40))
    assert all(files in ([], ["f.txt"]) for _, _, files in walked)  # never outside's secret.txt
    assert [d for d, name, _ in walked if name == "d"] == list(range(1, 41))


@pytest.mark.slow
def test_remove_tree_removes_a_chain_100_000_deep_with_few_fds(deep_tmp: Path) -> None:
    (deep_tmp / "t").mkdir()
    make_chain(deep_tmp / "t", 100_000)
    fd = _fd(deep_tmp)
    before = open_fds()
    try:
        with fd_limit(spare=WINDOW + 8):
            remove_tree("t", fd)
    finally:
        os.close(fd)
    assert os.listdir(deep_tmp) == []
    assert open_fds() == before - 1


def test_remove_tree_unlinks_links_and_special_files_without_following_them(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_text("kept")
    _mixed_tree(root, outside)
    os.symlink(outside, root / "a" / "b" / "dir-link")
    os.symlink(outside, tmp_path / "link")
    fd = _fd(tmp_path)
    try:
        remove_tree("link", fd)  # a link to a directory: the link goes, not what it points to
        remove_tree("root", fd)
        remove_tree("missing", fd)  # nothing there: no error
        (tmp_path / "file").write_bytes(BOTTOM)
        remove_tree("file", fd)
    finally:
        os.close(fd)
    assert sorted(os.listdir(tmp_path)) == ["outside"]
    assert sorted(os.listdir(outside)) == ["secret", "sub"]


def test_remove_tree_empties_again_a_directory_filled_while_it_was_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "t" / "sub").mkdir(parents=True)
    (tmp_path / "t" / "sub" / "f").write_text("f")
    rmdir, refills = os.rmdir, []

    def racing_rmdir(path, *, dir_fd=None):  # noqa: ANN001, ANN202
        if path == "sub" and not refills:  # a kernel writes in it between its emptying and its rmdir
            refills.append(path)
            (tmp_path / "t" / "sub" / "late").write_text("late")
        return rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", racing_rmdir)
    fd = _fd(tmp_path)
    try:
        remove_tree("t", fd)
    finally:
        os.close(fd)
    assert refills == ["sub"] and os.listdir(tmp_path) == []

"""``berth vfolder upload``'s walk of a local directory (a real tree): files are uploaded under the
directory's name; links (to a file, to a directory, dangling) and special files are never uploaded nor
followed, and are named, so that the user knows what the folder lacks."""

from __future__ import annotations

import os
from pathlib import Path

from services.cli.vfolder_transfer_cmd import walk


def test_links_and_special_files_are_skipped_and_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "sub" / "b.txt").write_text("b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (data / "to-file").symlink_to(outside / "secret")
    (data / "to-dir").symlink_to(outside)
    (data / "dangling").symlink_to(tmp_path / "missing")
    os.mkfifo(data / "sub" / "pipe")

    skipped: list[str] = []
    uploaded = list(walk((data,), "in", skipped))

    assert [(local.name, path) for local, path in uploaded] == [("a.txt", "in/data/a.txt"),
                                                                ("b.txt", "in/data/sub/b.txt")]
    assert sorted(Path(p).name for p in skipped) == ["dangling", "pipe", "to-dir", "to-file"]


def test_a_plain_tree_skips_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    skipped: list[str] = []
    assert [path for _, path in walk((tmp_path / "d",), "", skipped)] == ["d/x"]
    assert skipped == []

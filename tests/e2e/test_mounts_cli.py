"""`berth session create --mount` through `berth up` (its storage service making the folders ready) and the
CLI: the mounts asked for and the user's
dot-folders are on the session's record, shown by `berth session info` (table and JSON); a mount the
user may not have is refused with the reason and creates nothing."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import RunningBerth, berth_up
from tests.support.folders import created_with_cli

__all__ = ["berth_up"]

pytestmark = pytest.mark.e2e


def test_session_create_mounts_folders_and_info_shows_them(berth_up: RunningBerth) -> None:
    ready = created_with_cli(berth_up, "ready")["id"]
    dot = created_with_cli(berth_up, ".dot")["id"]

    created = berth_up.berth_json("session", "create", "--mount", "ready:r:ro", "--no-wait")

    info = berth_up.berth_json("session", "info", created["id"])
    assert [(m["name"], m["folderId"], m["target"], m["permission"]) for m in info["mounts"]] == [
        ("ready", ready, "/home/work/r", "ro"), (".dot", dot, "/home/work/.dot", "rw")]
    table = berth_up.berth("session", "info", created["id"]).stdout
    assert "MOUNTED AT" in table and "/home/work/r" in table and ready in table


def test_a_refused_mount_creates_nothing(berth_up: RunningBerth) -> None:
    created_with_cli(berth_up, "ready")

    done = berth_up.berth("session", "create", "--mount", "ready:/etc", "--no-wait", check=False)

    assert done.returncode != 0 and "must be a path under /home/work" in done.stderr, done.stderr
    assert berth_up.berth_json("session", "ls", "--all") == []

"""``DirectoryChanges``: a start is woken when the runner's socket is renamed into its directory, not at the
next look; on a real directory (inotify), and without inotify (the fallback)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from services.agent.backends import dir_changes
from services.agent.backends.dir_changes import DirectoryChanges

FOREVER = 60.0
"""A wait no test lets run out: a wait that returns True was woken by the change."""


async def test_a_socket_renamed_into_the_directory_wakes_the_waiter(tmp_path: Path) -> None:
    """As the runner does: it binds a socket under a temporary name, listens, and renames it into place."""
    with DirectoryChanges(tmp_path) as changes:
        assert changes.watching
        waiting = asyncio.ensure_future(changes.wait(FOREVER))
        await asyncio.sleep(0)
        assert not waiting.done()
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(tmp_path / ".runner.sock.tmp"))
            listener.listen()
            os.rename(tmp_path / ".runner.sock.tmp", tmp_path / "runner.sock")
            assert await asyncio.wait_for(waiting, FOREVER) is True


async def test_a_change_before_the_wait_is_not_missed_and_counts_once(tmp_path: Path) -> None:
    with DirectoryChanges(tmp_path) as changes:
        (tmp_path / "runner.sock").touch()
        assert await changes.wait(FOREVER) is True
        assert await changes.wait(0.01) is False  # nothing since


async def test_changes_elsewhere_do_not_wake_it(tmp_path: Path) -> None:
    (tmp_path / "io").mkdir()
    with DirectoryChanges(tmp_path / "io") as changes:
        (tmp_path / "beside").touch()
        assert await changes.wait(0.05) is False


async def test_without_inotify_it_sleeps_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dir_changes, "_libc", None)
    with DirectoryChanges(tmp_path, fallback=0.001) as changes:
        assert not changes.watching
        (tmp_path / "runner.sock").touch()
        assert await changes.wait(FOREVER) is False  # returns after the fallback: the caller looks again


async def test_a_directory_that_cannot_be_watched_falls_back(tmp_path: Path) -> None:
    with DirectoryChanges(tmp_path / "missing", fallback=0.001) as changes:
        assert not changes.watching
        assert await changes.wait(FOREVER) is False

"""``DirectoryWatcher``: a start is woken when the runner's socket is renamed into its directory, not at the next
look; on real directories (inotify), and without inotify (the fallback)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.agent.backends import dir_changes
from services.agent.backends.dir_changes import DirectoryWatcher

FOREVER = 60.0
"""A wait no test lets run out: a wait that returns True was woken by the change."""


@pytest.fixture
def watcher() -> Iterator[DirectoryWatcher]:
    watcher = DirectoryWatcher()
    yield watcher
    watcher.close()


async def test_a_socket_renamed_into_the_directory_wakes_the_waiter(tmp_path: Path, watcher: DirectoryWatcher) -> None:
    """As the runner does: it binds a socket under a temporary name, listens, and renames it into place."""
    with watcher.watch(tmp_path) as changes:
        assert changes.watching
        waiting = asyncio.ensure_future(changes.wait(FOREVER))
        await asyncio.sleep(0)
        assert not waiting.done()
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(tmp_path / ".runner.sock.tmp"))
            listener.listen()
            os.rename(tmp_path / ".runner.sock.tmp", tmp_path / "runner.sock")
            assert await asyncio.wait_for(waiting, FOREVER) is True


async def test_a_change_before_the_wait_is_not_missed_and_counts_once(tmp_path: Path, watcher: DirectoryWatcher) -> None:
    with watcher.watch(tmp_path) as changes:
        (tmp_path / "runner.sock").touch()
        assert await changes.wait(FOREVER) is True
        assert await changes.wait(0.01) is False  # nothing since


async def test_each_watch_is_woken_by_its_own_directory_only(tmp_path: Path, watcher: DirectoryWatcher) -> None:
    """One instance, many starts: a change wakes the watch of its directory, not the others; a directory watched
    twice (a start delivered twice) wakes both, and one closed leaves the other watching."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a, b, a_again = watcher.watch(tmp_path / "a"), watcher.watch(tmp_path / "b"), watcher.watch(tmp_path / "a")
    try:
        (tmp_path / "beside").touch()
        (tmp_path / "a" / "runner.sock").touch()
        assert await a.wait(FOREVER) is True and await a_again.wait(FOREVER) is True
        assert await b.wait(0.05) is False
        a.close()
        (tmp_path / "a" / "again").touch()
        assert await a_again.wait(FOREVER) is True
    finally:
        for changes in (a, b, a_again):
            changes.close()


async def test_without_inotify_it_sleeps_the_fallback(
    tmp_path: Path, watcher: DirectoryWatcher, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dir_changes, "_libc", None)
    with watcher.watch(tmp_path, fallback=0.001) as changes:
        assert not changes.watching
        (tmp_path / "runner.sock").touch()
        assert await changes.wait(FOREVER) is False  # returns after the fallback: the caller looks again


async def test_a_directory_that_cannot_be_watched_falls_back(tmp_path: Path, watcher: DirectoryWatcher) -> None:
    with watcher.watch(tmp_path / "missing", fallback=0.001) as changes:
        assert not changes.watching
        assert await changes.wait(FOREVER) is False

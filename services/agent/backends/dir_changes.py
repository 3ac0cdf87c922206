"""Waiting for an entry to appear in a directory without polling: Linux inotify, through libc (as ``io_mount.py``
mounts), on the event loop.

A start waits for the kernel runner's socket, which the runner renames into its ``io/`` directory once it
listens. Looked for every 5 ms, the socket was found 2.5 ms after it appeared on average, and each starting
kernel woke the agent 200 times a second. Watched, the agent wakes when the socket is renamed there (or anything
else is created there: the caller looks again). Where inotify is missing (another kernel than Linux, or the
user's inotify limits reached), ``DirectoryChanges`` wakes every ``fallback`` seconds instead, as the look did.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from pathlib import Path
from types import TracebackType

__all__ = ["DirectoryChanges"]

log = logging.getLogger(__name__)

_IN_MOVED_TO, _IN_CREATE, _IN_ONLYDIR = 0x80, 0x100, 0x01000000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_READ_SIZE = 4096
_warned = False
"""Whether a failed watch was logged as a warning already (the next ones are debug messages)."""

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    _libc.inotify_init1  # noqa: B018 - present only where inotify is
except (OSError, AttributeError):  # not Linux
    _libc = None


class DirectoryChanges:
    """Wakes ``wait`` when an entry is created in, or moved into, ``path``; a context manager. Made before
    whatever creates the entry starts, so that no change is missed."""

    def __init__(self, path: Path, fallback: float = 0.005) -> None:
        """Watches ``path`` (a directory) from now on; without inotify, ``wait`` sleeps ``fallback`` seconds at most."""
        self._fallback = fallback
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd = _watch(path)
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._on_readable)

    @property
    def watching(self) -> bool:
        """Whether changes wake ``wait`` (else it sleeps ``fallback`` seconds)."""
        return self._fd >= 0

    async def wait(self, timeout: float) -> bool:
        """Returns True as soon as an entry was created or moved in since the last ``wait`` (at once if one was),
        False after ``timeout`` seconds without (``fallback`` at most, without inotify)."""
        if self._fd < 0:
            await asyncio.sleep(max(0.0, min(timeout, self._fallback)))
            return False
        if not self._changed.is_set():
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, timeout))
            except asyncio.TimeoutError:
                return False
        self._changed.clear()
        return True

    def close(self) -> None:
        """Stops watching (the watch goes with its descriptor)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DirectoryChanges:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _on_readable(self) -> None:
        try:
            while os.read(self._fd, _READ_SIZE):
                pass
        except BlockingIOError:
            pass  # drained
        self._changed.set()


def _watch(path: Path) -> int:
    """Returns a non-blocking inotify descriptor watching ``path`` for entries created or moved in; -1 without."""
    if _libc is None:
        return -1
    fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd >= 0 and _libc.inotify_add_watch(fd, os.fsencode(path), _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR) >= 0:
        return fd
    global _warned
    log.log(logging.DEBUG if _warned else logging.WARNING, "cannot watch %s (inotify: %s); looking every few "
            "milliseconds instead (fs.inotify.max_user_instances may be too low)", path, os.strerror(ctypes.get_errno()))
    _warned = True
    if fd >= 0:
        os.close(fd)
    return -1

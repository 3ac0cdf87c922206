"""Waiting for an entry to appear in a directory without polling: Linux inotify, through libc (as ``io_mount.py``
mounts), on the event loop.

A start waits for the kernel runner's socket, which the runner renames into its ``io/`` directory once it
listens. Looked for every 5 ms, the socket was found 2.5 ms after it appeared on average, and each starting
kernel woke the agent 200 times a second. Watched, the agent wakes when the socket is renamed there (or anything
else is created there: the caller looks again).

A backend holds one ``DirectoryWatcher`` (one inotify instance) for its life and adds a watch per start:
removing a watch is immediate, whereas closing an instance waits for the kernel's grace period (up to 20 ms
here, measured), which every start would have waited. Where inotify is missing (another kernel than Linux, or
the user's inotify instances used up), a ``DirectoryChanges`` sleeps ``fallback`` seconds per wait instead, as
the look did.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
from pathlib import Path
from types import TracebackType

__all__ = ["DirectoryChanges", "DirectoryWatcher"]

log = logging.getLogger(__name__)

_IN_MOVED_TO, _IN_CREATE, _IN_ONLYDIR = 0x80, 0x100, 0x01000000
_EVENT = struct.Struct("iIII")
"""``struct inotify_event`` without its name: watch descriptor, mask, cookie, length of the name that follows."""
_READ_SIZE = 64 * 1024

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    _libc.inotify_init1  # noqa: B018 - present only where inotify is
except (OSError, AttributeError):  # not Linux
    _libc = None


class DirectoryChanges:
    """What ``DirectoryWatcher.watch`` returns: ``wait`` is woken when an entry is created in, or moved into, the
    directory; a context manager (``close`` removes the watch)."""

    def __init__(self, watcher: DirectoryWatcher | None, wd: int, fallback: float) -> None:
        self._watcher, self._wd, self._fallback = watcher, wd, fallback
        self._changed = asyncio.Event()

    @property
    def watching(self) -> bool:
        """Whether changes wake ``wait`` (else it sleeps ``fallback`` seconds)."""
        return self._watcher is not None

    async def wait(self, timeout: float) -> bool:
        """Returns True as soon as an entry was created or moved in since the last ``wait`` (at once if one was),
        False after ``timeout`` seconds without (``fallback`` at most, without a watch)."""
        if self._watcher is None:
            await asyncio.sleep(max(0.0, min(timeout, self._fallback)))
            return False
        if not self._changed.is_set():
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._changed.wait()
            except asyncio.TimeoutError:
                return False
        self._changed.clear()
        return True

    def close(self) -> None:
        """Stops watching."""
        if self._watcher is not None:
            self._watcher._unwatch(self._wd, self)  # noqa: SLF001 - its own watcher
            self._watcher = None

    def __enter__(self) -> DirectoryChanges:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _notify(self) -> None:
        self._changed.set()


class DirectoryWatcher:
    """One inotify instance, opened on the first ``watch`` (on the running event loop) and kept until ``close``."""

    def __init__(self) -> None:
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watches: dict[int, list[DirectoryChanges]] = {}
        self._warned = False

    def watch(self, path: Path, fallback: float = 0.005) -> DirectoryChanges:
        """Watches the directory ``path`` from now on (before whatever creates the awaited entry starts, so that
        no change is missed); without inotify, the returned ``wait`` sleeps ``fallback`` seconds."""
        wd = self._add_watch(path)
        if wd < 0:
            return DirectoryChanges(None, -1, fallback)
        changes = DirectoryChanges(self, wd, fallback)
        self._watches.setdefault(wd, []).append(changes)  # one directory watched twice has one descriptor
        return changes

    def close(self) -> None:
        """Closes the instance (its watches with it)."""
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
        self._fd, self._loop = -1, None
        self._watches.clear()

    def _add_watch(self, path: Path) -> int:
        if _libc is None or not self._opened():
            return -1
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR)
        if wd < 0:
            self._cannot(f"watch {path}")
        return wd

    def _opened(self) -> bool:
        """Opens the instance on the running loop (again, after a test's loop closed); False when inotify fails."""
        loop = asyncio.get_running_loop()
        if self._fd >= 0 and self._loop is loop:
            return True
        self.close()
        assert _libc is not None
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            self._cannot("open an inotify instance")
            return False
        self._fd, self._loop = fd, loop
        loop.add_reader(fd, self._on_readable)
        return True

    def _cannot(self, what: str) -> None:
        err = ctypes.get_errno()
        level = logging.DEBUG if self._warned else logging.WARNING
        log.log(level, "cannot %s (inotify: %s); looking every few milliseconds instead%s", what, os.strerror(err),
                " (fs.inotify.max_user_instances or max_user_watches may be too low)" if err in (errno.EMFILE, errno.ENOSPC) else "")
        self._warned = True

    def _unwatch(self, wd: int, changes: DirectoryChanges) -> None:
        waiters = self._watches.get(wd, [])
        if changes in waiters:
            waiters.remove(changes)
        if not waiters and self._watches.pop(wd, None) is not None and self._fd >= 0 and _libc is not None:
            _libc.inotify_rm_watch(self._fd, wd)  # EINVAL when the kernel removed it already (directory gone)

    def _on_readable(self) -> None:
        try:
            while data := os.read(self._fd, _READ_SIZE):
                offset = 0
                while offset + _EVENT.size <= len(data):
                    wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                    offset += _EVENT.size + length
                    woken = [c for all_ in self._watches.values() for c in all_] if wd == -1 else self._watches.get(wd, [])
                    for changes in woken:  # wd -1: the queue overflowed, events were lost: every waiter looks again
                        changes._notify()  # noqa: SLF001 - its own watches
        except BlockingIOError:
            pass  # drained

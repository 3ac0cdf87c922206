"""How many downloads and archives each user streams at once (``MAX_STREAMS_PER_USER``).

A stream holds its file and up to two read chunks in memory (the one being sent, in the connection's buffer,
and the one read ahead: ``transfer.CHUNK``) for as long as its client takes to read them, and a token may be
used any number of times while it lives. Without a bound, one user's download token and a few thousand
connections that never read held a file descriptor and about 12 MB each: the service's memory and fds, and
with them every tenant's uploads and downloads, went to one user (50 such connections took 600 MB). Past the
bound a stream is refused with 429 until one of the user's streams ends (sent, its client gone, cancelled).

An archive costs more: its walk holds the names of each directory it is in (``services.common.tree_walk``), and
a kernel puts a million names in one directory in 15 s (hard links: no inode, no quota); eight archives of such
a directory held 760 MB. So a user streams at most ``MAX_ARCHIVES_PER_USER`` archives at once (among its
``MAX_STREAMS_PER_USER`` streams).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

__all__ = ["MAX_ARCHIVES_PER_USER", "MAX_STREAMS_PER_USER", "StreamLimits", "TooManyStreamsError", "archive_limits"]

MAX_STREAMS_PER_USER = 32
"""Downloads and archives one user may stream at once (every volume and folder together)."""
MAX_ARCHIVES_PER_USER = 4
"""Archives one user may stream at once."""


class TooManyStreamsError(Exception):
    """Raised when a user already streams ``MAX_STREAMS_PER_USER`` downloads or archives (HTTP 429)."""

    status = 429


class StreamLimits:
    """The streams each user has open; thread-safe (a stream may end in a worker thread)."""

    def __init__(self, limit: int | None = None, what: str = "downloads or archives") -> None:
        self.limit = MAX_STREAMS_PER_USER if limit is None else limit
        self.what = what
        self._open: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def open(self, user: str) -> int:
        """Returns how many streams ``user`` has open."""
        with self._lock:
            return self._open.get(user, 0)

    def acquire(self, user: str) -> Callable[[], None]:
        """Counts one more stream of ``user`` and returns what ends it (idempotent); raises
        ``TooManyStreamsError`` when the user has ``limit`` open already."""
        with self._lock:
            if self._open[user] >= self.limit:
                if not self._open[user]:
                    del self._open[user]
                raise TooManyStreamsError(f"{user} has {self.limit} {self.what} streaming, the most one may have at "
                                          "once: let one of them end first")
            self._open[user] += 1
        done = threading.Event()

        def release() -> None:
            with self._lock:
                if done.is_set():
                    return
                done.set()
                self._open[user] -= 1
                if not self._open[user]:
                    del self._open[user]
        return release


def archive_limits() -> StreamLimits:
    """Returns the bound of the archives each user streams at once (``MAX_ARCHIVES_PER_USER``)."""
    return StreamLimits(MAX_ARCHIVES_PER_USER, "archives")

"""Opening a folder's regular files for reading, never anything else (downloads, archives, clones).

Code in a kernel can put a FIFO, a socket or a device node in a mounted folder, or rename one over a
file's name at any moment. ``open_regular`` looks at the entry first (a device is never opened), opens it
with ``O_NONBLOCK`` (a FIFO swapped in meanwhile opens at once instead of waiting for a writer that may
never come: a download waited so on the event loop, a clone in the volume's folder-event consumer) and
``O_NOFOLLOW``, then checks the fd itself: what is read is what was checked.
"""

from __future__ import annotations

import errno
import os
import stat

from services.storage.paths import PathError

__all__ = ["NotRegularFileError", "kind_of", "open_regular"]

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFLNK: "a link", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


class NotRegularFileError(PathError):
    """Raised when a path names something other than a regular file (HTTP 400)."""


def kind_of(mode: int) -> str:
    """Returns what a file of ``mode`` is, in words (``a FIFO``)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a file")


def open_regular(name: str, dir_fd: int, shown: str | None = None) -> int:
    """Returns a read-only, blocking fd of the regular file ``name`` in the directory ``dir_fd`` (the caller
    closes it); raises ``NotRegularFileError`` naming ``shown`` (default ``name``) and what it is when it is
    anything else, ``FileNotFoundError`` when it is gone, another ``OSError`` when it cannot be opened. Never
    waits for a FIFO's writer, never opens a device it looked at."""
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        raise _refused(shown or name, mode)
    try:
        fd = os.open(name, _FLAGS, dir_fd=dir_fd)
    except OSError as exc:  # renamed over since the look: a link (ELOOP) or a socket (ENXIO)
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise _refused(shown or name, stat.S_IFLNK if exc.errno == errno.ELOOP else stat.S_IFSOCK) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refused(shown or name, mode)
        os.set_blocking(fd, True)  # as any fd the service reads (reads of a regular file never wait anyway)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refused(shown: str, mode: int) -> NotRegularFileError:
    return NotRegularFileError(f"not a regular file: {shown!r} is {kind_of(mode)}")

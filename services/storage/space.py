"""Room on a volume's disk for uploads and clones, so that they never fill the disk.

A folder's quota bounds what its users may keep; the disk under a volume bounds everything written
there, and it is often Berth's own disk too (``berth up`` keeps PostgreSQL, NATS and the folders in one
data directory): an upload that fills it stops the whole platform (PostgreSQL can then write nothing,
not even a login). So a clone is made only when the disk has room for its source's files; an upload is
created only when the disk has room for it and for the rest of the uploads being written, beside a floor
kept free (``floor``), and one being written stops at that floor (a kernel may be filling the same disk
meanwhile): the client is answered 507 and may resume the upload once space is freed. Free space is what
the disk gives a user that is not root (root's reserve, 5 % of an ext4 disk by default, is left to the
services that run as root).
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["FLOOR_MAX", "FLOOR_SHARE", "Disk", "NoSpaceError", "disk", "ensure_room", "floor"]

FLOOR_SHARE = 0.05
"""The share of the disk an upload leaves free ..."""
FLOOR_MAX = 1 << 30
"""... up to 1 GiB."""


class NoSpaceError(OSError):
    """Raised when an upload or a clone does not fit on its volume's disk (HTTP 507 Insufficient Storage); an
    ``OSError``, as the disk's own refusal would be: what meets it may be tried again once space is freed."""

    status = 507


class Disk(NamedTuple):
    """A disk's size and the bytes free to a user that is not root."""

    size: int
    free: int


def disk(path: str | os.PathLike[str]) -> Disk:
    """Measures the disk that holds ``path``."""
    st = os.statvfs(path)
    return Disk(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def floor(size: int) -> int:
    """The bytes uploads leave free on a disk of ``size`` bytes."""
    return min(FLOOR_MAX, int(size * FLOOR_SHARE))


def ensure_room(path: str | os.PathLike[str], needed: int, what: str) -> None:
    """Raises ``NoSpaceError`` (saying ``what`` needed it) unless the disk of ``path`` has ``needed`` bytes
    free above its ``floor``."""
    found = disk(path)
    kept = floor(found.size)
    if found.free - kept < needed:
        raise NoSpaceError(f"not enough space on the volume's disk: {what} needs {needed} bytes, "
                           f"{max(found.free - kept, 0)} are free for uploads ({found.free} free, {kept} kept free); "
                           f"free space there, then retry (an unfinished upload resumes)")

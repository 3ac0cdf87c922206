"""Downloads never fill the local disk: ``berth vfolder download`` keeps ``KEEP_FREE`` bytes free where it writes.

A folder's file may be far larger on the wire than on the storage's disk (a kernel's ``truncate -s 1T``: a sparse
file of no blocks, 1 TiB when read), and an archive's size is not known before it ends: such a download wrote until
the disk was full (every program on the machine then failed to write). A download whose announced length does not
fit is refused before anything is written (``check_room``); one of unknown length is stopped once the disk's free
space falls under ``KEEP_FREE`` (``RoomWatch``, looked at every ``LOOK_EVERY`` bytes written).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

__all__ = ["KEEP_FREE", "LOOK_EVERY", "RoomWatch", "check_room"]

KEEP_FREE = 1 << 30
"""Bytes a download leaves free on the disk it writes to."""
LOOK_EVERY = 64 << 20
"""Bytes written between two looks at the free space."""


def _free(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def _shown(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def check_room(directory: Path, needed: int) -> None:
    """Raises ``ClickException`` when writing ``needed`` more bytes in ``directory`` would leave under ``KEEP_FREE``
    free there."""
    free = _free(directory)
    if needed > free - KEEP_FREE:
        raise click.ClickException(
            f"the download is {_shown(needed)}, and the disk of {directory} has {_shown(free)} free (a download keeps "
            f"{_shown(KEEP_FREE)} free): free some space, or download elsewhere with --to")


class RoomWatch:
    """Counts the bytes written in ``directory``; ``wrote(n)`` raises ``ClickException`` once the disk has under
    ``KEEP_FREE`` free (looked at every ``LOOK_EVERY`` bytes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._since = 0

    def wrote(self, size: int) -> None:
        self._since += size
        if self._since < LOOK_EVERY:
            return
        self._since = 0
        free = _free(self.directory)
        if free < KEEP_FREE:
            raise click.ClickException(f"stopped: the disk of {self.directory} has {_shown(free)} free, under the "
                                       f"{_shown(KEEP_FREE)} a download keeps free; free some space, or download "
                                       "elsewhere with --to")

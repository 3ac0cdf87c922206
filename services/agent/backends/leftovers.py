"""Retention of the kernels' directories on a node (the Docker and the process backends).

``<data_dir>/kernels/<kernel_id>`` holds what a kernel leaves behind once it ended: for Docker its log (``berth
logs`` after the end) and its exit, once its container is removed; for the process backend its log and its
working directory. Kept for good, they would fill the node's disk with every kernel it ever ran (up to
2 x 10 MB of log each, and a directory). A directory is removed once nothing in it has changed for ``keep``
seconds (``BERTH_KERNEL_RETENTION``, a week by default; 0 keeps them for good) and the backend says its kernel
is not in use: a kernel that runs for longer than that keeps its directory.

``Leftovers`` knows when each directory is next due for a look (a heap): the directories found at the first
look, and each one a start makes. A look (``due``) costs what is due, never a walk of every directory the node
kept: a node's cost stays the same however many kernels it ran. A directory looked at too soon (changed since,
or its kernel still running) is due again ``keep`` seconds after its last change, or after the look. The heap
holds an entry per directory kept: its memory follows the retention, not the node's age.

What a kernel wrote there (the process backend's ``work/``, a non-root Docker agent's ``io/``) is tenant code's:
a directory is removed by ``services.common.tree_walk.remove_tree``, a loop at any depth with a bounded number
of fds, links unlinked, never followed. ``shutil.rmtree`` recursed, one frame per level: a chain about 1,000
levels deep raised ``RecursionError`` out of the sweep, and the directory, with every other one due in the same
look, was never looked at again until the agent restarted (where the same happened again).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import time
from pathlib import Path
from typing import Awaitable, Callable

from contracts.subjects import SubjectError, check_token
from services.common.tree_walk import remove_tree

__all__ = ["DEFAULT_KEEP", "Leftovers"]

log = logging.getLogger(__name__)

DEFAULT_KEEP = 7 * 86400.0
"""Seconds an ended kernel's directory (its log and exit) stays on the node: a week."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Leftovers:
    """When each kernel directory under ``kernels_dir`` is due for removal, and its removal."""

    def __init__(self, kernels_dir: Path, keep: float = DEFAULT_KEEP, clock: Callable[[], float] = time.time) -> None:
        """``keep``: seconds without a change before a directory goes (0: never); ``clock``: wall-clock
        seconds, as the directories' modification times."""
        if keep < 0:
            raise ValueError(f"BERTH_KERNEL_RETENTION must not be negative, got {keep}")
        self._dir = kernels_dir
        self._keep = keep
        self._clock = clock
        self._heap: list[tuple[float, str]] = []
        self._loaded = False

    def began(self, kernel_id: str) -> None:
        """Notes that a start made the directory of ``kernel_id``."""
        self.later(kernel_id, self._clock() + self._keep)

    def later(self, kernel_id: str, when: float) -> None:
        """Looks at the directory of ``kernel_id`` again at ``when`` (wall-clock seconds)."""
        if self._keep:
            heapq.heappush(self._heap, (when, kernel_id))

    def due(self) -> list[str]:
        """Returns the kernels whose directory is due for a look, and forgets them (each is removed, or noted
        ``later``); the first call also notes the directories already there."""
        if not self._keep:
            return []
        if not self._loaded:
            self._note_found(self.found())
        now, kernels = self._clock(), []
        while self._heap and self._heap[0][0] <= now:
            kernels.append(heapq.heappop(self._heap)[1])
        return kernels

    def found(self) -> list[tuple[float, str]]:
        """Returns (when due, kernel id) of each kernel directory there now (reads only: any thread)."""
        try:
            entries = list(os.scandir(self._dir))
        except FileNotFoundError:
            return []
        due = []
        for entry in entries:
            try:
                check_token(entry.name, "kernel id")
            except SubjectError:
                continue  # not a kernel's directory: never Berth's to remove
            changed = _last_change(Path(entry.path)) if entry.is_dir(follow_symlinks=False) else None
            if changed is not None:
                due.append((changed + self._keep, entry.name))
        return due

    def remove(self, kernel_id: str) -> float | None:
        """Removes the directory of ``kernel_id`` when nothing in it changed for ``keep`` seconds; returns None
        once it is gone, else when it is due again (for ``later``: this method changes nothing else, so it may
        run on any thread). Links in it are removed, never followed; what cannot be removed (a directory its
        kernel made unreadable, say) is logged and tried again a retention later."""
        root = self._dir / kernel_id
        changed = _last_change(root)
        if changed is None:
            return None  # gone already
        if changed + self._keep > self._clock():
            return changed + self._keep
        try:
            dir_fd = os.open(self._dir, _DIR_FLAGS)
            try:
                remove_tree(kernel_id, dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            log.warning("cannot remove all of %s, the directory of an ended kernel: %s", root, exc)
        return self._clock() + self._keep if os.path.lexists(root) else None

    async def sweep(self, in_use: Callable[[str], Awaitable[bool]]) -> list[str]:
        """Removes the directories due whose kernel is not ``in_use`` (asked of each; those in use are looked at
        again a retention later); returns the kernels whose directory is gone. The file system is read and
        written on a worker thread, the heap only here. When a look fails, the kernels not yet looked at stay due
        (they were dropped from the heap, and never looked at again until a restart)."""
        if self._keep and not self._loaded:
            self._note_found(await asyncio.to_thread(self.found))
        gone, due = [], self.due()
        for index, kernel_id in enumerate(due):
            try:
                if await in_use(kernel_id):
                    self.later(kernel_id, self._clock() + self._keep)
                    continue
                again = await asyncio.to_thread(self.remove, kernel_id)
            except BaseException:  # (asking in_use failed, say): this one and the rest stay due for the next sweep
                for left in due[index:]:
                    self.later(left, self._clock())
                raise
            if again is None:
                gone.append(kernel_id)
            else:
                self.later(kernel_id, again)
        return gone

    def _note_found(self, found: list[tuple[float, str]]) -> None:
        self._loaded = True
        for item in found:
            heapq.heappush(self._heap, item)


def _last_change(root: Path) -> float | None:
    """The latest modification time of ``root`` and of what it holds one level down (the log, the exit, the
    socket's directory), links not followed; None when ``root`` is gone."""
    try:
        latest = root.lstat().st_mtime
        with os.scandir(root) as entries:
            for entry in entries:
                latest = max(latest, entry.stat(follow_symlinks=False).st_mtime)
    except FileNotFoundError:
        return None
    return latest

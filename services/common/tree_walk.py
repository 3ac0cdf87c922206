"""Walking and deleting directory trees that code in a kernel wrote, without recursion, with a bounded number
of open fds: the storage service's folders, the agent's kernel directories.

``os.fwalk`` and ``shutil.rmtree(dir_fd=...)`` recurse, one Python frame and one open fd per level: a tree
about 1,000 levels deep (``for i in $(seq 2000); do mkdir d; cd d; done`` in a kernel) raised
``RecursionError`` in the usage meter, archives, clones and deletes, and in the agent's removal of an ended
kernel's directory, and one 100,000 levels deep would have exhausted the process's fds. Here a walk is a loop
over a ``Chain``: the directories from the walk's root to where it is, each by name and identity (``st_dev``,
``st_ino``), an fd kept open for the root and the last ``WINDOW`` of them only.

Nothing is ever followed: every directory is opened ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's fd,
so a directory swapped for a symlink mid-walk fails to open and is skipped, never walked. A directory whose fd
the window let go is opened again when the walk comes back up to it: as ``..`` of the child it leaves (never a
link), accepted only when it is the very directory walked down (same identity), else by its name from the
nearest ancestor still open, each step ``O_NOFOLLOW | O_DIRECTORY`` and checked the same way. One that is no
longer there (a kernel moved or removed it meanwhile) is left, with what remained of it to walk: the walk
goes on where the chain still holds, and never leaves the tree below its root (whose fd it keeps).

Depth: ``walk`` goes as deep as the tree does (the usage meter counts every file, however deep: a quota is
not bypassed by hiding data deep), unless given ``max_depth`` (archives and clones: ``MAX_DEPTH``, where it
raises ``TooDeepError``); ``remove_tree`` always removes everything.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "WINDOW", "Chain", "TooDeepError", "Visit", "remove_tree", "walk"]

WINDOW = 16
"""Directories of a chain (besides its root) whose fds are kept open: a tree no deeper is walked without
opening any directory twice."""
MAX_DEPTH = 4096
"""Levels of directories an archive or a clone goes down at most (``TooDeepError`` past them)."""
REMOVE_ROUNDS = 3
"""Times ``remove_tree`` lists a directory again that something was created in while it was emptied."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SKIPPED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EPERM)
"""Why a directory listed a moment ago is not walked: gone, no longer a directory (a link, a file), or
not to be opened (as ``os.fwalk`` skips it)."""
_REPLACED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
"""Why a directory listed a moment ago is not removed as one: gone, or no longer a directory."""


class TooDeepError(ValueError):
    """Raised when a walk bounded by ``max_depth`` meets a directory deeper than that (a ``ValueError``; the
    storage service's clone reports it as a ``VolumeError``, its archive's stream ends there)."""


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _open_same(name: str, dir_fd: int, ident: tuple[int, int]) -> int | None:
    """Returns an fd of the directory ``name`` in ``dir_fd`` when it is the one of ``ident``, else None."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _SKIPPED:
            return None
        raise
    try:
        if _ident(fd) == ident:
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


@dataclass
class _Frame:
    name: str
    ident: tuple[int, int]
    fd: int | None


class Chain:
    """The directories from a root (an fd, duplicated: the caller keeps its own) down to the current one;
    fds open for the root and the last ``WINDOW`` directories only (see the module's docstring)."""

    def __init__(self, root_fd: int) -> None:
        fd = os.dup(root_fd)
        try:
            self._frames = [_Frame("", _ident(fd), fd)]
        except BaseException:
            os.close(fd)
            raise

    @property
    def depth(self) -> int:
        """Returns how many directories below the root the current one is (0: the root)."""
        return len(self._frames) - 1

    @property
    def fd(self) -> int:
        """Returns the fd of the current directory (open until the chain leaves it)."""
        fd = self._frames[-1].fd
        assert fd is not None
        return fd

    @property
    def name(self) -> str:
        """Returns the name of the current directory in its parent ("" for the root)."""
        return self._frames[-1].name

    def path(self) -> str:
        """Returns the current directory's path from the root ("" for the root)."""
        return "/".join(frame.name for frame in self._frames[1:])

    def enter(self, name: str) -> int:
        """Opens the subdirectory ``name`` of the current directory, never through a link, and makes it
        current; returns its fd; raises ``OSError`` (``ELOOP``, ``ENOTDIR``, ``ENOENT`` ...) when it cannot."""
        fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        try:
            self._frames.append(_Frame(name, _ident(fd), fd))
        except BaseException:
            os.close(fd)
            raise
        if len(self._frames) > WINDOW + 1:
            self._let_go(self._frames[-WINDOW - 1])
        return fd

    def leave(self) -> int:
        """Closes the current directory and makes its parent current again (opened again when the window let
        its fd go); returns the new depth: less than one level up when ancestors were moved or removed
        meanwhile (left as well, with what remained of them to walk)."""
        child = self._frames.pop()
        assert child.fd is not None and self._frames, "the root is never left"
        try:
            if self._frames[-1].fd is None:
                self._reopen(child.fd)
        finally:
            os.close(child.fd)
        return self.depth

    def close(self) -> None:
        """Closes every fd the chain holds (idempotent)."""
        while self._frames:
            self._let_go(self._frames.pop())

    def _let_go(self, frame: _Frame) -> None:
        if frame.fd is not None:
            fd, frame.fd = frame.fd, None
            os.close(fd)

    def _reopen(self, child_fd: int) -> None:
        """Opens the current directory again: ``..`` of ``child_fd`` when that is the directory walked down,
        else by names from the nearest open ancestor; frames no longer found so are dropped."""
        top = self._frames[-1]
        top.fd = _open_same("..", child_fd, top.ident)
        if top.fd is not None:
            return
        start = max(i for i, frame in enumerate(self._frames) if frame.fd is not None)
        for i in range(start + 1, len(self._frames)):
            frame, parent = self._frames[i], self._frames[i - 1]
            assert parent.fd is not None
            frame.fd = _open_same(frame.name, parent.fd, frame.ident)
            if frame.fd is None:  # moved or removed meanwhile: this frame and those below it are left
                for gone in self._frames[i:]:
                    self._let_go(gone)
                del self._frames[i:]
                return
            if i - 1 and i - 1 < len(self._frames) - WINDOW:
                self._let_go(parent)


@dataclass
class Visit:
    """A directory ``walk`` is in: its depth (0: the root), name, fd, subdirectories (``dirs``: not the links
    to directories, which ``os.fwalk`` lists there) and other entries (``files``: links and special files
    included). ``fd`` and ``path()`` hold until the walk goes on; ``dirs`` may be pruned in place before."""

    depth: int
    name: str
    fd: int
    dirs: list[str]
    files: list[str]
    _chain: Chain = field(repr=False)

    def path(self) -> str:
        """Returns the directory's path from the walk's root ("" for the root); only while it is visited."""
        return self._chain.path()


def _listing(fd: int) -> tuple[list[str], list[str]]:
    dirs: list[str] = []
    files: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
    return dirs, files


def walk(root_fd: int, *, max_depth: int | None = None) -> Iterator[Visit]:
    """Yields the directory ``root_fd`` and every directory under it, top-down, each before its
    subdirectories (the equivalent of ``os.fwalk(".", dir_fd=root_fd, follow_symlinks=False)``, at any depth,
    with at most ``WINDOW`` + 3 fds open); raises ``TooDeepError`` at a directory deeper than ``max_depth``.
    A directory that is gone, no longer a directory or cannot be opened when its turn comes is skipped."""
    chain = Chain(root_fd)
    try:
        visit = Visit(0, "", chain.fd, *_listing(chain.fd), chain)
        yield visit
        todo = [visit.dirs[::-1]]  # per level of the chain: the subdirectories still to walk, next one last
        while True:
            if not todo[-1]:
                if not chain.depth:
                    return
                del todo[chain.leave() + 1:]
                continue
            name = todo[-1].pop()
            if max_depth is not None and chain.depth >= max_depth:
                top = chain.path().split("/", 1)[0]
                raise TooDeepError(f"directories nested deeper than {max_depth} levels (in {top!r})")
            try:
                fd = chain.enter(name)
            except OSError as exc:
                if exc.errno in _SKIPPED:
                    continue
                raise
            visit = Visit(chain.depth, name, fd, *_listing(fd), chain)
            yield visit
            todo.append(visit.dirs[::-1])
    finally:
        chain.close()


def _unlink(name: str, dir_fd: int) -> bool:
    """Unlinks a non-directory; returns False when ``name`` is (now) a directory."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        return False
    return True


def _emptied(fd: int) -> list[str]:
    """Unlinks every entry of the directory ``fd`` but its subdirectories; returns these, next one last."""
    dirs, files = _listing(fd)
    dirs.extend(name for name in files if not _unlink(name, fd))
    return dirs[::-1]


def remove_tree(name: str, dir_fd: int) -> None:
    """Removes the entry ``name`` of the directory ``dir_fd`` and, when it is a directory, everything in it
    (the equivalent of ``shutil.rmtree(name, dir_fd=dir_fd)``, at any depth, with at most ``WINDOW`` + 3 fds
    open); links and special files are unlinked, never followed; nothing there is no error."""
    try:
        if _unlink(name, dir_fd):
            return
    except PermissionError:  # EPERM: what Linux answers for unlink of a directory
        pass
    chain = Chain(dir_fd)
    try:
        try:
            chain.enter(name)
        except OSError as exc:
            if exc.errno not in _REPLACED:
                raise
            _unlink(name, dir_fd)  # removed, or a link or a file renamed over it, meanwhile: unlinked, not followed
            return
        todo = [[], _emptied(chain.fd)]  # per level of the chain: subdirectories still to remove, next one last
        rounds = 0
        while chain.depth or todo[0]:
            if todo[-1]:
                sub = todo[-1].pop()
                try:
                    chain.enter(sub)
                except OSError as exc:
                    if exc.errno not in _REPLACED:
                        raise
                    _unlink(sub, chain.fd)  # no longer a directory (a link, a file): unlinked; gone: nothing
                    continue
                todo.append(_emptied(chain.fd))
                continue
            done, depth = chain.name, chain.depth
            del todo[chain.leave() + 1:]
            if chain.depth != depth - 1:
                continue  # moved away meanwhile (with the levels above it): no longer in this tree
            try:
                os.rmdir(done, dir_fd=chain.fd)
            except FileNotFoundError:
                pass
            except OSError as exc:  # something was created in it meanwhile: emptied again, a few times
                if exc.errno != errno.ENOTEMPTY or rounds >= REMOVE_ROUNDS:
                    raise
                rounds += 1
                todo[-1].append(done)
    finally:
        chain.close()

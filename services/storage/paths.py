"""Safe resolution of folder-relative paths: openat-style, symlinks never followed.

Every operation on a folder walks the path's components from the folder's directory fd with
``os.open(component, O_DIRECTORY | O_NOFOLLOW, dir_fd=parent)``: a symlink anywhere on the way
(planted from inside a container through a rw mount, say) fails the walk with ``PathError``
instead of leading out of the folder. The last component is opened by the caller relative to
the returned parent fd, again with ``O_NOFOLLOW``. Nothing here calls ``realpath`` and then opens
by name (that races with a rename).

``split_path`` checks the text first with ``contracts.vfolder.check_folder_path`` (the one
validator): relative POSIX, NFC, no NUL, no ``.``/``..``/empty component, each component ≤ 255
bytes, the whole ≤ 4096 bytes.

A walk that creates missing directories (``create``) gives each one it creates to ``owner``
(uid, gid; None: left to the service's own user), by ``fchown`` on the fd of the new directory
opened with ``O_NOFOLLOW``: run as root, the directories an upload makes belong to the kernel
user as its file does, so a kernel can write in them through its rw mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from contracts.vfolder import FolderPathError, check_folder_path

__all__ = ["MissingPathError", "NotADirectoryPathError", "Owner", "PathError", "open_dir", "open_parent", "split_path"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathError(ValueError):
    """Raised when a path is malformed, escapes its folder or crosses a symlink (HTTP 400)."""

    status = 400


class MissingPathError(PathError):
    """Raised when a path names nothing (HTTP 404)."""

    status = 404


class NotADirectoryPathError(PathError):
    """Raised when a walk meets an entry that is no directory to it (a file, or a link: never followed) where the
    path needs one (HTTP 400: nothing can be made or read there; a removal finds nothing there to remove)."""


def split_path(path: str) -> tuple[str, ...]:
    """Returns the components of a folder-relative path ("" → the folder itself), checked by
    ``contracts.vfolder.check_folder_path`` (which normalises: NFC, a trailing ``/`` dropped);
    raises ``PathError`` naming the rule it breaks."""
    try:
        normal = check_folder_path(path, allow_root=True)
    except FolderPathError as exc:
        raise PathError(str(exc)) from None
    return tuple(normal.split("/")) if normal else ()


Owner = tuple[int, int]
"""A uid and gid to give what a walk creates."""


def _open_child_dir(parent: int, name: str, create: bool, owner: Owner | None = None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise MissingPathError(f"no such directory: {name!r}") from None
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:  # made meanwhile by another walk: its maker owns it
            return _open_child_dir(parent, name, create=False)
        fd = _open_child_dir(parent, name, create=False)
        if owner is not None:
            try:
                os.fchown(fd, *owner)
            except BaseException:
                os.close(fd)
                raise
        return fd
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise NotADirectoryPathError(f"not a directory (or a symlink): {name!r}") from None
        raise


@contextlib.contextmanager
def open_dir(root_fd: int, parts: tuple[str, ...], *, create: bool = False,
             owner: Owner | None = None) -> Iterator[int]:
    """Yields an fd of the directory ``parts`` under ``root_fd`` (closed afterwards), walked
    without following any symlink; ``create`` makes missing directories on the way, each given
    to ``owner`` (uid, gid) when one is given."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = _open_child_dir(fd, part, create, owner)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_parent(root_fd: int, parts: tuple[str, ...], *, create: bool = False,
                owner: Owner | None = None) -> Iterator[tuple[int, str]]:
    """Yields ``(fd of the parent directory, last component)`` of a non-empty path; ``create`` and
    ``owner`` as for ``open_dir``."""
    if not parts:
        raise PathError("the folder's root is not an entry")
    with open_dir(root_fd, parts[:-1], create=create, owner=owner) as fd:
        yield fd, parts[-1]

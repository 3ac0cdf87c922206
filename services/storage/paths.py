"""Safe resolution of folder-relative paths: openat-style, symlinks never followed.

Every operation on a folder walks the path's components from the folder's directory fd with
``os.open(component, O_DIRECTORY | O_NOFOLLOW, dir_fd=parent)``: a symlink anywhere on the way
(planted from inside a container through a rw mount, say) fails the walk with ``PathError``
instead of leading out of the folder. The last component is opened by the caller relative to
the returned parent fd, again with ``O_NOFOLLOW``. Nothing here calls ``realpath`` and then opens
by name (that races with a rename).

``split_path`` checks the text first (the rules of ``contracts.vfolder.check_folder_path``):
relative POSIX, NFC, no NUL, no ``.``/``..``/empty component, each component ≤ 255 bytes, the
whole ≤ 4096 bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import unicodedata
from collections.abc import Iterator

__all__ = ["MAX_COMPONENT_BYTES", "MAX_PATH_BYTES", "PathError", "open_dir", "open_parent", "split_path"]

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathError(ValueError):
    """Raised when a path is malformed, escapes its folder, crosses a symlink, or is missing."""


def split_path(path: str) -> tuple[str, ...]:
    """Returns the components of a folder-relative path ("" → the folder itself); raises
    ``PathError`` naming the rule it breaks."""
    if not isinstance(path, str):
        raise PathError("a path is a string")
    if "\x00" in path:
        raise PathError("a path has no NUL character")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PathError("a path is valid UTF-8") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise PathError(f"a path is at most {MAX_PATH_BYTES} bytes")
    if path == "":
        return ()
    if path.startswith("/"):
        raise PathError("a path is relative to its folder (no leading '/')")
    if unicodedata.normalize("NFC", path) != path:
        raise PathError("a path is in Unicode NFC form")
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise PathError(f"a path has no empty, '.' or '..' component: {path!r}")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise PathError(f"a path component is at most {MAX_COMPONENT_BYTES} bytes")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in part):
            raise PathError("a path has no control characters")
    return parts


def _open_child_dir(parent: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise PathError(f"no such directory: {name!r}") from None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        return _open_child_dir(parent, name, create=False)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise PathError(f"not a directory (or a symlink): {name!r}") from None
        raise


@contextlib.contextmanager
def open_dir(root_fd: int, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
    """Yields an fd of the directory ``parts`` under ``root_fd`` (closed afterwards), walked
    without following any symlink; ``create`` makes missing directories on the way."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = _open_child_dir(fd, part, create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_parent(root_fd: int, parts: tuple[str, ...], *, create: bool = False) -> Iterator[tuple[int, str]]:
    """Yields ``(fd of the parent directory, last component)`` of a non-empty path."""
    if not parts:
        raise PathError("the folder's root is not an entry")
    with open_dir(root_fd, parts[:-1], create=create) as fd:
        yield fd, parts[-1]

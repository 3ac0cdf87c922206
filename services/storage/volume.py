"""Volumes: where folders live. ``Volume`` is the port; ``PosixVolume`` a directory on this host.

Layout under a volume's root: ``folders/<folder_id>/`` (a folder's data, what sessions mount),
``.uploads/`` (partial uploads, never inside a folder), ``.work/`` (clones being copied and
folders being deleted, renamed there first so that a crash mid-way is redone, never half-seen).
Every path inside a folder is resolved by ``services.storage.paths`` (openat walk, no symlink
followed), every tree walked or deleted by ``services.common.tree_walk`` (a loop, not a recursion: any
depth, bounded fds; a clone refuses a tree more than ``MAX_DEPTH`` levels deep); a symlink found in a
folder is listed as ``link`` and never read, copied or archived, and a FIFO, socket or device is never
opened for a wait (``regular_files``). A name no path of the API can name (not UTF-8, a control character,
not NFC: a kernel made it) is listed escaped (``listed_name``).
Folder directories and what the service writes in them belong to ``owner`` (the kernels' uid:gid)
when the service runs as root, so non-root kernels can write rw mounts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from contracts.vfolder import check_folder_path, is_folder_id
from services.common.tree_walk import MAX_DEPTH, Chain, TooDeepError, remove_tree, walk
from services.storage.paths import (
    MissingPathError,
    NotADirectoryPathError,
    PathError,
    open_dir,
    open_parent,
    split_path,
)
from services.storage.regular_files import NotRegularFileError, open_regular
from services.storage.revocations import Revocations

__all__ = ["Entry", "MissingFolderError", "PosixVolume", "Volume", "VolumeError", "check_folder_id", "listed_name"]

MAX_LIST_ENTRIES = 10_000
"""Entries one listing returns at most (the rest are left out, ``truncated``)."""


class VolumeError(Exception):
    """Raised when an operation cannot be done (an existing destination: HTTP 409)."""

    status = 409


class MissingFolderError(VolumeError):
    """Raised when a folder does not exist on its volume (HTTP 404)."""

    status = 404


@dataclass(frozen=True)
class Entry:
    name: str
    type: str
    """``file``, ``dir``, ``link`` (never followed) or ``other``."""
    size: int
    mtime: float
    escaped: bool = False
    """True when ``name`` is escaped (``listed_name``): no path of the API names the entry."""


def check_folder_id(folder_id: str) -> str:
    """Returns ``folder_id`` when it is ``vfolder_<32 hex>``; raises ``VolumeError``."""
    if not is_folder_id(folder_id):
        raise MissingFolderError(f"not a folder id: {folder_id!r}")
    return folder_id


def _create(dir_fd: int, name: str, flags: int) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "link" if stat.S_ISLNK(mode) else "other"


def listed_name(name: str) -> tuple[str, bool]:
    """Returns how a listing shows the name of an entry (as ``os.scandir`` gives it: undecodable bytes as
    surrogates) and whether it is escaped: as it is when a path of the API can name it, else as bash's
    ``$'...'`` of its bytes (printable ASCII as itself, ``\\\\`` and ``\\'`` escaped, every other byte
    ``\\xHH``): lossless, JSON-safe, and what a terminal in a session takes to rename it."""
    try:
        if check_folder_path(name) == name:
            return name, False
    except ValueError:  # a control character (FolderPathError), or not UTF-8 (UnicodeEncodeError)
        pass
    shown = "".join("\\\\" if b == 0x5C else "\\'" if b == 0x27 else chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}"
                    for b in os.fsencode(name))
    return f"$'{shown}'", True


class Volume(Protocol):
    """A place folders live; every path is folder-relative and checked."""

    name: str

    def create(self, folder_id: str) -> None: ...
    def clone(self, source_id: str, folder_id: str) -> None: ...
    def delete(self, folder_id: str) -> None: ...
    def claim(self, folder_id: str) -> None: ...
    def owns(self, folder_id: str) -> bool: ...
    def close(self, folder_id: str, closed: bool) -> None: ...
    def is_closed(self, folder_id: str) -> bool: ...
    def exists(self, folder_id: str) -> bool: ...
    def usage(self, folder_id: str) -> tuple[int, int]: ...
    def open_file(self, folder_id: str, path: str) -> int: ...
    def put(self, folder_id: str, path: str, upload_dir_fd: int, upload_name: str) -> None: ...
    def list(self, folder_id: str, path: str) -> list[Entry]: ...
    def mkdir(self, folder_id: str, path: str) -> None: ...
    def move(self, folder_id: str, src: str, dst: str) -> None: ...
    def remove(self, folder_id: str, path: str) -> bool: ...


class PosixVolume:
    """A volume that is a directory of this host (see the module's docstring)."""

    def __init__(self, name: str, root: Path, owner: tuple[int, int] | None = None) -> None:
        self.name = name
        self.root = Path(root)
        self.owner = owner if os.geteuid() == 0 else None
        for sub in ("folders", ".uploads", ".work"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            # this service's alone (and root's): a folder reaches its kernels by a bind mount, which the
            # directories above it do not gate; ``folders/`` was 0755, and every local user of the host could
            # list every tenant's files and read those a kernel wrote (0644 by its umask)
            os.chmod(self.root / sub, 0o700)
        self.revocations = Revocations(self.root / ".work" / "revoked")
        """Access taken back from a user of a folder (unshared, left, permission lowered): their older tokens."""

    @property
    def uploads(self) -> Path:
        return self.root / ".uploads"

    def folder_path(self, folder_id: str) -> Path:
        return self.root / "folders" / check_folder_id(folder_id)

    @contextlib.contextmanager
    def folder_fd(self, folder_id: str) -> Iterator[int]:
        """Yields an fd of the folder's directory; ``VolumeError`` when it does not exist."""
        try:
            fd = os.open(self.folder_path(folder_id), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise MissingFolderError(f"folder {folder_id} does not exist on volume {self.name}") from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _own(self, name: str, dir_fd: int) -> None:
        if self.owner is not None:
            os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)

    # -- folders ---------------------------------------------------------------------------------
    def claim(self, folder_id: str) -> None:
        """Marks the folder as this volume's (before its directory is made), so that a purge
        request redelivered after the directory is gone is still known to be this volume's."""
        owned = self.root / ".work" / "owned"
        owned.mkdir(exist_ok=True)
        (owned / check_folder_id(folder_id)).touch()

    def owns(self, folder_id: str) -> bool:
        return (self.root / ".work" / "owned" / check_folder_id(folder_id)).exists()

    def close(self, folder_id: str, closed: bool) -> None:
        """Marks the folder closed to its tokens (in the trash) or open again (restored); idempotent."""
        mark = self.root / ".work" / "closed" / check_folder_id(folder_id)
        if closed:
            mark.parent.mkdir(exist_ok=True)
            mark.touch()
        else:
            mark.unlink(missing_ok=True)

    def is_closed(self, folder_id: str) -> bool:
        return (self.root / ".work" / "closed" / check_folder_id(folder_id)).exists()

    def exists(self, folder_id: str) -> bool:
        return self.folder_path(folder_id).is_dir()

    def create(self, folder_id: str) -> None:
        """Creates the folder's directory (idempotent)."""
        path = self.folder_path(folder_id)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o755)
        if self.owner is not None:
            os.chown(path, *self.owner, follow_symlinks=False)

    def clone(self, source_id: str, folder_id: str) -> None:
        """Copies the source folder into a new one (idempotent: a finished clone is left alone;
        an interrupted copy is started over). Symlinks and special files are not copied (nor a file
        that a kernel removed or replaced by one meanwhile)."""
        target = self.folder_path(folder_id)
        if target.is_dir():
            return
        work = self.root / ".work" / f"clone-{folder_id}"
        self._discard(work.name)
        work.mkdir(mode=0o755)
        try:
            with self.folder_fd(source_id) as src_fd, self._work_fd() as work_fd:
                self._copy_tree(src_fd, work_fd, work.name)
        except BaseException as exc:  # a disk full, say: the copy so far is not left to take the space
            with contextlib.suppress(OSError):
                self._discard(work.name)
            if isinstance(exc, TooDeepError):  # reported failed (a VolumeError): a retry cannot help
                raise VolumeError(f"the source folder {source_id} cannot be cloned: {exc}") from None
            raise
        if self.owner is not None:
            os.chown(work, *self.owner)
        os.rename(work, target)

    def _copy_tree(self, src_fd: int, work_fd: int, work: str) -> None:
        """Copies the directories and regular files under ``src_fd`` (at most ``MAX_DEPTH`` levels) into the
        directory ``work`` of ``work_fd``, from fd to fd (no path of a deep tree is ever named)."""
        with contextlib.closing(Chain(work_fd)) as dest, contextlib.closing(walk(src_fd, max_depth=MAX_DEPTH)) as tops:
            dest.enter(work)  # the copy of a directory ``depth`` levels down is ``depth`` + 1 levels down in ``dest``
            for top in tops:
                if top.depth:
                    while dest.depth > top.depth:  # back up to the copy of its parent (the walk goes top-down)
                        dest.leave()
                    os.mkdir(top.name, 0o755, dir_fd=dest.fd)
                    self._give(dest.enter(top.name))
                for name in top.files:
                    try:
                        fd = open_regular(name, top.fd)
                    except (FileNotFoundError, NotRegularFileError):
                        continue
                    create = functools.partial(_create, dest.fd)
                    with os.fdopen(fd, "rb") as src, open(name, "wb", opener=create) as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                        self._give(dst.fileno())

    def _give(self, fd: int) -> None:
        if self.owner is not None:
            os.fchown(fd, *self.owner)

    @contextlib.contextmanager
    def _work_fd(self) -> Iterator[int]:
        fd = os.open(self.root / ".work", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    def _discard(self, name: str) -> None:
        """Removes the entry ``name`` of ``.work`` (a clone's copy, a purge), whatever its depth."""
        with self._work_fd() as fd:
            remove_tree(name, fd)

    def delete(self, folder_id: str) -> None:
        """Deletes the folder's directory (idempotent): renamed into ``.work`` first, then removed."""
        path = self.folder_path(folder_id)
        work = self.root / ".work" / f"purge-{folder_id}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, work)
        self._discard(work.name)

    def usage(self, folder_id: str) -> tuple[int, int]:
        """Returns the folder's (bytes, files): regular files' sizes, links not followed, however deep."""
        total = files = 0
        with self.folder_fd(folder_id) as fd, contextlib.closing(walk(fd)) as tops:
            for top in tops:  # no depth bound: a quota is not bypassed by hiding data deep
                for name in top.files:
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(name, dir_fd=top.fd, follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode):
                            total += st.st_size
                            files += 1
        return total, files

    # -- content ---------------------------------------------------------------------------------
    def open_file(self, folder_id: str, path: str) -> int:
        """Returns a read-only fd of a regular file of the folder (the caller closes it); raises
        ``NotRegularFileError`` (400) for anything else, a FIFO included, without waiting on it."""
        with self.folder_fd(folder_id) as root, open_parent(root, split_path(path)) as (parent, name):
            try:
                return open_regular(name, parent, path)
            except FileNotFoundError:
                raise MissingPathError(f"no such file: {path!r}") from None

    @contextlib.contextmanager
    def open_directory(self, folder_id: str, path: str) -> Iterator[int]:
        """Yields an fd of a directory of the folder."""
        with self.folder_fd(folder_id) as root, open_dir(root, split_path(path)) as fd:
            yield fd

    def put(self, folder_id: str, path: str, upload_dir_fd: int, upload_name: str) -> None:
        """Moves a finished upload into the folder at ``path`` atomically (``os.replace`` between
        directory fds), creating missing parent directories; an existing directory there is refused."""
        with (self.folder_fd(folder_id) as root,
              open_parent(root, split_path(path), create=True, owner=self.owner) as (parent, name)):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    raise VolumeError(f"{path!r} exists and is a directory")
            try:
                os.replace(upload_name, name, src_dir_fd=upload_dir_fd, dst_dir_fd=parent)
            except IsADirectoryError:  # made since the look above (a kernel's mkdir)
                raise VolumeError(f"{path!r} exists and is a directory") from None
            self._own(name, parent)
            os.fsync(parent)

    def list(self, folder_id: str, path: str) -> list[Entry]:
        """Returns the entries of a directory of the folder (links listed, not followed; names as
        ``listed_name`` shows them; an entry removed while listed left out)."""
        entries = []
        with self.open_directory(folder_id, path) as fd:
            for item in os.scandir(fd):
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                name, escaped = listed_name(item.name)
                entries.append(Entry(name, _kind(st.st_mode), st.st_size, st.st_mtime, escaped))
                if len(entries) >= MAX_LIST_ENTRIES:
                    break
        return sorted(entries, key=lambda e: e.name)

    def mkdir(self, folder_id: str, path: str) -> None:
        """Creates a directory and its missing parents (idempotent)."""
        parts = split_path(path)
        with self.folder_fd(folder_id) as root:
            for depth in range(1, len(parts) + 1):
                with open_parent(root, parts[:depth]) as (parent, name):
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=parent)
                        self._own(name, parent)
                    if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise PathError(f"not a directory: {'/'.join(parts[:depth])!r}")

    def move(self, folder_id: str, src: str, dst: str) -> None:
        """Renames an entry inside the folder; refuses an existing destination or a move into itself."""
        src_parts, dst_parts = split_path(src), split_path(dst)
        if not src_parts or not dst_parts:
            raise PathError("the folder's root cannot be moved or replaced")
        if dst_parts[: len(src_parts)] == src_parts:
            raise PathError("cannot move a directory into itself")
        with self.folder_fd(folder_id) as root, open_parent(root, src_parts) as (sp, sname), \
                open_parent(root, dst_parts) as (dp, dname):
            try:
                os.stat(sname, dir_fd=sp, follow_symlinks=False)
            except FileNotFoundError:
                raise MissingPathError(f"no such entry: {src!r}") from None
            with contextlib.suppress(FileNotFoundError):
                os.stat(dname, dir_fd=dp, follow_symlinks=False)
                raise VolumeError(f"{dst!r} exists")
            os.rename(sname, dname, src_dir_fd=sp, dst_dir_fd=dp)

    def remove(self, folder_id: str, path: str) -> bool:
        """Deletes a file, link or directory tree of the folder; returns False when it was absent: a directory on
        its way too, or a file or link where one is needed (in a folder that is there, the path names nothing, as
        ``rm`` finds nothing at ``file/x``), so that a deletion of several paths names those as missing and
        deletes the others, where a 400 after the first ones failed it half done."""
        with self.folder_fd(folder_id) as root:
            try:
                with open_parent(root, split_path(path)) as (parent, name):
                    return _remove_entry(parent, name)
            except (MissingPathError, NotADirectoryPathError):
                return False


def _remove_entry(parent: int, name: str) -> bool:
    """Deletes the entry ``name`` of the directory ``parent`` (a link or a file unlinked; a directory with all in it,
    however deep); returns False when there is none."""
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    remove_tree(name, parent)
    return True

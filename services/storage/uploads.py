"""Partial uploads (tus): bytes appended under ``<root>/.uploads``, moved into the folder whole.

An upload is ``<id>.json`` (what it is for: folder, path, length, user, quota scope, creation
time) and ``<id>.part`` (the bytes so far; its size is the offset, so an upload resumes after a
restart of the service or of the client). On the last byte the part is fsynced, hashed (SHA-256,
kept incrementally while the process lives, else read again), sealed (``<id>.done``: what its
report says), and moved into the folder with one ``os.replace`` between directory fds: a reader
sees the old file or the new one, never a piece. The seal stays until the report is stored; at
start, every seal left is finished (moved, if it was not) and reported again (same report id:
stored once).
An upload whose destination is refused (a malformed path at creation; at the move, a path through a
link, a directory there, the folder gone) is dropped whole: its part, its record, its seal and its
reservation — nothing of it stays, and it answers the refusal (400 / 409). So is one whose last step
fails otherwise (the disk full while it is sealed: 507; another ``OSError``: 500), saying so: its client
uploads it again (a complete upload left behind would hold its reservation, and a resuming client, seeing
every byte there, would take it for placed).
Unfinished uploads expire after ``ttl`` seconds (default 24 h) and are removed.
An upload is created only when the volume's disk has room for it (and for the rest of the unfinished
ones), and one being written stops before the disk is full (``space``): 507, resumable once space is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec

from services.storage.paths import PathError, split_path
from services.storage.quota import Reservations
from services.storage.space import NoSpaceError, ensure_room
from services.storage.volume import PosixVolume, VolumeError

__all__ = ["PendingUpload", "Sealed", "UploadError", "UploadStore", "UPLOAD_TTL"]

log = logging.getLogger(__name__)
UPLOAD_TTL = 24 * 3600
ROOM_CHECK_EVERY = 16 << 20
"""Bytes an upload writes between two looks at its disk's room (a kernel may be filling the disk meanwhile)."""
MAX_UNFINISHED = 256
"""Unfinished uploads a user may have at once (each is two files on the volume's disk, kept until it
finishes, is terminated or expires: without a bound, one upload token created them in a loop)."""
WRITING_HOLDS = 60.0
"""Seconds after its last write (or its creation) during which an unfinished upload holds room on the disk for
the rest of it: a new upload is created only beside what those being written have yet to write. One left
unwritten longer holds none (it was held for the upload's whole lifetime, 24 h: one request with a large
length refused every other upload of the volume for a day); written again, it checks the disk's room every
``ROOM_CHECK_EVERY`` bytes as any upload does."""
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class UploadError(Exception):
    """Raised when an upload request cannot be honoured; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PendingUpload(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    folder: str
    path: str
    length: int
    user: str
    scope: str
    created: float


class Sealed(msgspec.Struct, frozen=True, kw_only=True):
    """A complete upload, hashed, recorded as ``<id>.done`` before it is moved into its folder and
    kept until its report is stored (so neither the move nor the report is lost to a crash)."""

    upload: PendingUpload
    sha256: str
    report_id: str


@dataclass
class _Progress:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hasher: "hashlib._Hash | None" = None
    hashed: int = 0


class UploadStore:
    """The partial uploads of one volume."""

    def __init__(self, volume: PosixVolume, reservations: Reservations, ttl: float = UPLOAD_TTL) -> None:
        self.volume = volume
        self.reservations = reservations
        self.ttl = ttl
        self._dir = volume.uploads
        self._progress: dict[str, _Progress] = {}
        self.recovered = self._recover()
        """Uploads sealed before a restart whose report may not be stored: to report again."""
        for upload in self.pending():
            reservations.restore(upload.id, upload.scope, upload.length, upload.user)

    def _part(self, upload_id: str) -> str:
        return str(self._dir / f"{upload_id}.part")

    def pending(self) -> list[PendingUpload]:
        """Returns the unfinished uploads on disk."""
        found = []
        for meta in self._dir.glob("*.json"):
            with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
                found.append(msgspec.json.decode(meta.read_bytes(), type=PendingUpload))
        return found

    def create(self, *, folder: str, path: str, length: int, user: str, scope: str, room: int,
               now: float, issued_at: int | None = None) -> PendingUpload:
        """Starts an upload of ``length`` bytes to ``path`` of ``folder`` (reserving them in ``scope`` within
        ``room``, the room of a token issued at ``issued_at``: ``quota``); raises ``QuotaError`` when they do not
        fit, ``NoSpaceError`` when the disk has no room for them and for the rest of the uploads being written,
        ``UploadError`` 429 when ``user`` has ``MAX_UNFINISHED`` unfinished uploads."""
        split_path(path)  # PathError before anything is reserved or written
        if self.reservations.unfinished(user) >= MAX_UNFINISHED:
            raise UploadError(f"{user} has {MAX_UNFINISHED} unfinished uploads, the most one may have at once: "
                              "finish, resume or cancel some of them (or wait for them to expire) first", 429)
        ensure_room(self._dir, length + self._unwritten(), f"this upload ({length} bytes) with the unfinished ones")
        upload = PendingUpload(id=secrets.token_hex(16), folder=folder, path=path, length=length, user=user,
                               scope=scope, created=now)
        self.reservations.reserve(upload.id, scope, length, room, user, issued_at)
        fd = os.open(self._part(upload.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        meta = self._dir / f"{upload.id}.json"
        meta.write_bytes(msgspec.json.encode(upload))
        return upload

    def _unwritten(self) -> int:
        """Returns the bytes this volume's uploads being written (within ``WRITING_HOLDS`` seconds of their
        part's last change) have yet to write (from the reservations, which every volume's uploads share:
        those with a part here are this volume's; no record is read)."""
        since = time.time() - WRITING_HOLDS  # against the parts' modification times: the file system's clock
        parts = ((self._stat(upload_id), length) for upload_id, length in self.reservations.lengths().items())
        return sum(max(length - part.st_size, 0) for part, length in parts
                   if part is not None and part.st_mtime >= since)

    def _stat(self, upload_id: str) -> os.stat_result | None:
        """Returns the stat of an upload's part (its size is the upload's offset), None when the part is gone."""
        try:
            return os.stat(self._part(upload_id))
        except FileNotFoundError:
            return None

    def get(self, upload_id: str) -> PendingUpload:
        """Returns an unfinished upload; ``UploadError`` 404 when there is none by that id."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadError("no such upload", 404)
        try:
            return msgspec.json.decode((self._dir / f"{upload_id}.json").read_bytes(), type=PendingUpload)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            raise UploadError("no such upload", 404) from None

    def offset(self, upload: PendingUpload) -> int:
        part = self._stat(upload.id)
        if part is None:
            raise UploadError("no such upload", 404)
        return part.st_size

    async def append(self, upload: PendingUpload, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Appends the request's bytes at ``offset`` (which must be the current one: 409 otherwise)
        and returns the new offset; refuses bytes past the upload's length (413) and a second
        writer of the same upload at once (423); stops with ``NoSpaceError`` (507) before the disk is full, what
        was written kept (the upload resumes once space is freed)."""
        progress = self._progress.setdefault(upload.id, _Progress())
        if progress.lock.locked():
            raise UploadError("this upload is being written by another request", 423)
        async with progress.lock:
            current = self.offset(upload)
            if offset != current:
                raise UploadError(f"Upload-Offset {offset} does not match the upload's offset {current}", 409)
            if progress.hasher is None or progress.hashed != current:
                progress.hasher = hashlib.sha256() if current == 0 else None
                progress.hashed = 0
            fd = os.open(self._part(upload.id), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            unchecked = 0
            try:
                async for chunk in chunks:
                    if current + len(chunk) > upload.length:
                        raise UploadError("more bytes than the upload's length", 413)
                    if unchecked <= 0:
                        unchecked = min(ROOM_CHECK_EVERY, upload.length - current)
                        ensure_room(self._dir, unchecked, f"the rest of this upload, from byte {current},")
                    view = memoryview(chunk)
                    while view:
                        view = view[self._write(fd, view):]
                    current += len(chunk)
                    unchecked -= len(chunk)
                    if progress.hasher is not None:
                        progress.hasher.update(chunk)
                        progress.hashed = current
            finally:
                os.close(fd)
            return current

    @staticmethod
    def _write(fd: int, data: memoryview) -> int:
        try:
            return os.write(fd, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(f"the volume's disk is full ({exc.strerror}); free space there, then retry "
                                   "(the upload resumes)") from exc
            raise

    async def finish(self, upload: PendingUpload) -> Sealed:
        """Moves a complete upload into its folder; returns what its report says (acknowledge it
        with ``acknowledge`` once the report is stored). The upload is over either way: placed, or
        dropped whole with the error (``PathError``/``VolumeError`` for its destination, ``NoSpaceError``
        for a full disk, ``UploadError`` 500 for another ``OSError``)."""
        progress = self._progress.pop(upload.id, None)
        hasher = progress.hasher if progress and progress.hashed == upload.length else None
        try:
            sealed = await asyncio.to_thread(self._seal, upload, hasher)
        finally:
            self.reservations.release(upload.id)
        self.reservations.finished(upload.scope, upload.length)  # counted against tokens issued before (``quota``)
        return sealed

    def _seal(self, upload: PendingUpload, hasher: "hashlib._Hash | None") -> Sealed:
        sealed = None
        try:
            sealed = self._write_seal(upload, hasher)
            self._place(sealed)
        except (PathError, VolumeError):
            self._drop(upload)
            raise
        except OSError as exc:
            if sealed is not None and not os.path.exists(self._part(upload.id)):  # in its folder: a step after failed
                log.warning("upload %s is in its folder, but the move did not end well: %s", upload.id, exc)
                with contextlib.suppress(OSError):
                    os.unlink(self._dir / f"{upload.id}.json")
                return sealed
            self._drop(upload)
            raise _unplaced(upload, exc) from exc
        return sealed

    def _write_seal(self, upload: PendingUpload, hasher: "hashlib._Hash | None") -> Sealed:
        with open(self._part(upload.id), "rb") as f:
            os.fsync(f.fileno())
            if hasher is None:
                hasher = hashlib.file_digest(f, "sha256")
        sealed = Sealed(upload=upload, sha256=hasher.hexdigest(), report_id=f"upload:{upload.id}")
        done = self._dir / f"{upload.id}.done"
        tmp = self._dir / f"{upload.id}.done.tmp"
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(sealed))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, done)  # from here on, a crash redoes the move and the report at start
        return sealed

    def _drop(self, upload: PendingUpload) -> None:
        """Forgets a complete upload that cannot be placed: seal, part, record and reservation."""
        for suffix in (".done.tmp", ".done"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / f"{upload.id}{suffix}")
        self.terminate(upload)

    def _place(self, sealed: Sealed) -> None:
        upload = sealed.upload
        if os.path.exists(self._part(upload.id)):
            dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                self.volume.put(upload.folder, upload.path, dir_fd, f"{upload.id}.part")
            finally:
                os.close(dir_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._dir / f"{upload.id}.json")

    def _recover(self) -> list[Sealed]:
        """Finishes the uploads sealed before a crash (moved into their folder if they were not)."""
        found = []
        for done in sorted(self._dir.glob("*.done")):
            try:
                sealed = msgspec.json.decode(done.read_bytes(), type=Sealed)
                self._place(sealed)
            except (PathError, VolumeError) as exc:
                log.warning("dropped the sealed upload %s: its destination is refused: %s", done.name, exc)
                self._drop(sealed.upload)
                continue
            except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("cannot finish the sealed upload %s: %s", done.name, exc)
                continue
            found.append(sealed)
        return found

    def acknowledge(self, sealed: Sealed) -> None:
        """Forgets a finished upload once its report is stored."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._dir / f"{sealed.upload.id}.done")

    def terminate(self, upload: PendingUpload) -> None:
        """Removes an unfinished upload and its reservation (idempotent)."""
        self._progress.pop(upload.id, None)
        for suffix in (".json", ".part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / f"{upload.id}{suffix}")
        self.reservations.release(upload.id)

    def terminate_folder(self, folder: str, user: str | None = None) -> int:
        """Removes the unfinished uploads into ``folder`` (closed to its tokens), only ``user``'s when given (its
        access taken back); returns how many."""
        pending = [u for u in self.pending() if u.folder == folder and user in (None, u.user)]
        for upload in pending:
            self.terminate(upload)
        return len(pending)

    def expire(self, now: float) -> int:
        """Removes uploads older than the ttl; returns how many."""
        stale = [u for u in self.pending() if now - u.created >= self.ttl]
        for upload in stale:
            self.terminate(upload)
        return len(stale)


def _unplaced(upload: PendingUpload, exc: OSError) -> OSError | UploadError:
    """Returns the error a client is answered when its complete upload could not be placed (and was dropped)."""
    what = f"the upload to {upload.path!r} could not be moved into its folder ({exc.strerror or exc}) and was dropped"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"{what}: the volume's disk is full; free space there, then upload it again")
    return UploadError(f"{what}: upload it again", 500)

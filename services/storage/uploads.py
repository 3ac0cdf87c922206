"""Partial uploads (tus): bytes appended under ``<root>/.uploads``, moved into the folder whole.

An upload is ``<id>.json`` (what it is for: folder, path, length, user, quota scope, creation
time) and ``<id>.part`` (the bytes so far; its size is the offset, so an upload resumes after a
restart of the service or of the client). On the last byte the part is fsynced, hashed (SHA-256,
kept incrementally while the process lives, else read again), and moved into the folder with one
``os.replace`` between directory fds: a reader sees the old file or the new one, never a piece.
Unfinished uploads expire after ``ttl`` seconds (default 24 h) and are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec

from services.storage.quota import Reservations
from services.storage.volume import PosixVolume

__all__ = ["PendingUpload", "UploadError", "UploadStore", "UPLOAD_TTL"]

UPLOAD_TTL = 24 * 3600
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
        for upload in self.pending():
            reservations.restore(upload.id, upload.scope, upload.length)

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
               now: float) -> PendingUpload:
        """Starts an upload of ``length`` bytes to ``path`` of ``folder`` (reserving them in
        ``scope`` within ``room``); raises ``QuotaError`` when they do not fit."""
        upload = PendingUpload(id=secrets.token_hex(16), folder=folder, path=path, length=length, user=user,
                               scope=scope, created=now)
        self.reservations.reserve(upload.id, scope, length, room)
        fd = os.open(self._part(upload.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        meta = self._dir / f"{upload.id}.json"
        meta.write_bytes(msgspec.json.encode(upload))
        return upload

    def get(self, upload_id: str) -> PendingUpload:
        """Returns an unfinished upload; ``UploadError`` 404 when there is none by that id."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadError("no such upload", 404)
        try:
            return msgspec.json.decode((self._dir / f"{upload_id}.json").read_bytes(), type=PendingUpload)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            raise UploadError("no such upload", 404) from None

    def offset(self, upload: PendingUpload) -> int:
        try:
            return os.stat(self._part(upload.id)).st_size
        except FileNotFoundError:
            raise UploadError("no such upload", 404) from None

    async def append(self, upload: PendingUpload, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Appends the request's bytes at ``offset`` (which must be the current one: 409 otherwise)
        and returns the new offset; refuses bytes past the upload's length (413) and a second
        writer of the same upload at once (423)."""
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
            try:
                async for chunk in chunks:
                    if current + len(chunk) > upload.length:
                        raise UploadError("more bytes than the upload's length", 413)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    current += len(chunk)
                    if progress.hasher is not None:
                        progress.hasher.update(chunk)
                        progress.hashed = current
            finally:
                os.close(fd)
            return current

    async def finish(self, upload: PendingUpload) -> str:
        """Moves a complete upload into its folder and returns its SHA-256 (hex)."""
        progress = self._progress.pop(upload.id, None)
        hasher = progress.hasher if progress and progress.hashed == upload.length else None
        digest = await asyncio.to_thread(self._seal, upload, hasher)
        self.reservations.release(upload.id)
        return digest

    def _seal(self, upload: PendingUpload, hasher: "hashlib._Hash | None") -> str:
        part = self._part(upload.id)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
            if hasher is None:
                hasher = hashlib.file_digest(f, "sha256")
        dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.volume.put(upload.folder, upload.path, dir_fd, f"{upload.id}.part")
        finally:
            os.close(dir_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._dir / f"{upload.id}.json")
        return hasher.hexdigest()

    def terminate(self, upload: PendingUpload) -> None:
        """Removes an unfinished upload and its reservation (idempotent)."""
        self._progress.pop(upload.id, None)
        for suffix in (".json", ".part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / f"{upload.id}{suffix}")
        self.reservations.release(upload.id)

    def expire(self, now: float) -> int:
        """Removes uploads older than the ttl; returns how many."""
        stale = [u for u in self.pending() if now - u.created >= self.ttl]
        for upload in stale:
            self.terminate(upload)
        return len(stale)

"""What every request of the data plane works with: volumes, uploads, the key, reports, usage."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from contracts.storage_token import StorageClaims, TokenError, verify_token
from contracts.vfolder import check_folder_path
from services.storage.paths import PathError
from services.storage.reporting import Reporter
from services.storage.streams import StreamLimits, archive_limits
from services.storage.uploads import UploadStore
from services.storage.usage import UsageMeter
from services.storage.volume import PosixVolume, VolumeError

__all__ = ["StorageContext", "request_token"]

TOKEN_HEADER = "x-berth-storage-token"


def request_token(request: Request) -> str:
    """Returns the token of a request: ``Authorization: Bearer``, ``X-Berth-Storage-Token`` or
    the ``token`` query parameter (so that a plain link downloads)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get(TOKEN_HEADER) or request.query_params.get("token", "")


@dataclass
class StorageContext:
    volumes: dict[str, PosixVolume]
    uploads: dict[str, UploadStore]
    key: bytes
    reporter: Reporter
    meter: UsageMeter
    clock: Callable[[], float] = field(default=time.time)
    streams: StreamLimits = field(default_factory=StreamLimits)
    """The downloads and archives each user streams at once (``streams``)."""
    archives: StreamLimits = field(default_factory=archive_limits)
    """The archives each user streams at once (fewer: each holds its walk's listings)."""

    def authorize(self, request: Request, op: str, path: str | None = None) -> StorageClaims:
        """Returns the claims of the request's token for ``op`` (and the normalised ``path`` when
        given: it must be the token's, or under it for list/archive); raises ``TokenError``, also for
        a token of a folder in the trash (closed when the storage service saw ``vfolder.trashed``), and one of a
        user whose access to the folder was taken back after it was issued (``revocations``)."""
        if path is not None:
            try:
                path = check_folder_path(path, allow_root=True)
            except ValueError as exc:
                raise PathError(str(exc)) from None
        claims = verify_token(self.key, request_token(request), op=op, now=self.clock(), path=path)
        if claims.volume not in self.volumes:
            raise VolumeError(f"volume {claims.volume!r} is not served here")
        if self.volumes[claims.volume].is_closed(claims.folder):
            raise TokenError(f"folder {claims.folder} is in the trash: its tokens no longer work")
        if self.volumes[claims.volume].revocations.refuses(claims.folder, claims.user, claims.op, claims.iat):
            raise TokenError(f"{claims.user}'s access to folder {claims.folder} changed after this token was "
                             f"issued: it no longer grants {claims.op!r} (ask for a new one)")
        return claims

    def volume(self, claims: StorageClaims) -> PosixVolume:
        return self.volumes[claims.volume]

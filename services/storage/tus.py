"""tus 1.0.0 uploads (core + creation + creation-with-upload + termination): an ordinary tus client
works unchanged.

``POST /tus`` with an upload token (its ``path`` is the destination, its ``max_bytes`` the room
left) and ``Upload-Length`` creates an upload; with ``Content-Type: application/offset+octet-stream``
its body is the upload's first bytes (a small file in one request; a creation whose body is refused
or cut short is undone, as its client never learnt the upload's URL). ``HEAD /tus/<id>`` gives its
offset; ``PATCH`` appends at the offset; ``DELETE`` terminates it. HEAD/PATCH/DELETE need an upload
token of the same folder and path (a fresh one resumes an upload whose first token expired). The
last byte moves the file into the folder atomically and posts a ``file_uploaded`` report.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from contracts.storage_token import StorageClaims
from contracts.storage_reports import FileUploadedReport
from services.storage.context import StorageContext
from services.storage.reporting import now_utc
from services.storage.uploads import PendingUpload, Sealed, UploadError, UploadStore

__all__ = ["TUS_HEADERS", "report_uploaded", "tus_create", "tus_delete", "tus_head", "tus_options", "tus_patch"]

TUS_VERSION = "1.0.0"
TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
OCTETS = "application/offset+octet-stream"
MAX_UPLOAD_LENGTH = 1 << 40
"""The longest upload the service takes (1 TiB), whatever the token's room."""


def _tus(status: int, **headers: str) -> Response:
    return Response(status_code=status, headers={**TUS_HEADERS, **headers})


def _check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise UploadError(f"Tus-Resumable {TUS_VERSION} is required", 412)


def _length(request: Request, name: str) -> int:
    raw = request.headers.get(name, "")
    if not raw.isdigit() or len(raw) > 16:
        raise UploadError(f"{name} must be a non-negative integer")
    return int(raw)


async def tus_options(request: Request) -> Response:
    return Response(status_code=204, headers={**TUS_HEADERS, "Tus-Version": TUS_VERSION,
                                              "Tus-Extension": "creation,creation-with-upload,termination",
                                              "Tus-Max-Size": str(MAX_UPLOAD_LENGTH)})


async def tus_create(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    _check_version(request)
    claims = ctx.authorize(request, "upload")
    if "upload-defer-length" in request.headers:
        raise UploadError("Upload-Defer-Length is not supported: give Upload-Length")
    length = _length(request, "upload-length")
    if length > MAX_UPLOAD_LENGTH:
        raise UploadError(f"an upload is at most {MAX_UPLOAD_LENGTH} bytes", 413)
    if not claims.path:
        raise UploadError("an upload token names a file, not the folder's root")
    if not ctx.volume(claims).exists(claims.folder):
        raise UploadError("the folder does not exist on its volume", 404)
    store = ctx.uploads[claims.volume]
    upload = store.create(folder=claims.folder, path=claims.path, length=length, user=claims.user,
                          scope=claims.quota_scope or f"folder:{claims.folder}", room=claims.max_bytes,
                          now=ctx.clock(), issued_at=claims.iat)
    offset = 0
    if request.headers.get("content-type") == OCTETS:
        try:
            offset = await store.append(upload, 0, request.stream())
        except BaseException:
            store.terminate(upload)
            raise
    if offset == length:
        await _complete(ctx, store, upload)
    return _tus(201, Location=f"/tus/{upload.id}", **{"Upload-Offset": str(offset)})


def _own_upload(ctx: StorageContext, request: Request) -> tuple[StorageClaims, UploadStore, PendingUpload]:
    _check_version(request)
    claims = ctx.authorize(request, "upload")
    store = ctx.uploads[claims.volume]
    upload = store.get(request.path_params["upload_id"])
    if (upload.folder, upload.path) != (claims.folder, claims.path):
        raise UploadError("no such upload", 404)
    return claims, store, upload


async def tus_head(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    _, store, upload = _own_upload(ctx, request)
    return _tus(200, **{"Upload-Offset": str(store.offset(upload)), "Upload-Length": str(upload.length)})


async def tus_patch(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    _, store, upload = _own_upload(ctx, request)
    if request.headers.get("content-type") != OCTETS:
        raise UploadError("Content-Type must be application/offset+octet-stream", 415)
    offset = await store.append(upload, _length(request, "upload-offset"), request.stream())
    if offset == upload.length:
        await _complete(ctx, store, upload)
    return _tus(204, **{"Upload-Offset": str(offset)})


async def tus_delete(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    _, store, upload = _own_upload(ctx, request)
    store.terminate(upload)
    return _tus(204)


async def _complete(ctx: StorageContext, store: UploadStore, upload: PendingUpload) -> None:
    report_uploaded(ctx, store, await store.finish(upload))
    ctx.meter.touch(store.volume, upload.folder)


def report_uploaded(ctx: StorageContext, store: UploadStore, sealed: Sealed) -> None:
    """Posts the ``file_uploaded`` report of a sealed upload; the seal is dropped once it is stored."""
    upload = sealed.upload
    ctx.reporter.post(FileUploadedReport(report_id=sealed.report_id, volume=store.volume.name, folder_id=upload.folder,
                                         observed_at=now_utc(), path=upload.path, size=upload.length,
                                         sha256=sealed.sha256, by=upload.user),
                      after=lambda: store.acknowledge(sealed))

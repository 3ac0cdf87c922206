"""The data plane's ASGI application (Starlette): routes, and errors mapped to HTTP statuses.

Every route needs a storage token (``contracts.storage_token``) for its operation; see
``tus.py``, ``transfer.py`` and ``file_ops.py``. Errors answer ``{"error": ...}`` with 400 (bad
path or header), 403 (token refused), 404 (no such folder, file or upload), 409 (offset or
destination conflict), 413 (over the room left), 429 (too many streams or uploads of one user at once), 507 (no
room on the volume's disk: ``space``), and never change anything (an upload stopped by 507 keeps what it wrote,
to resume).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.storage_token import TokenError
from services.storage import file_ops, transfer, tus
from services.storage.context import StorageContext
from services.storage.paths import PathError
from services.storage.quota import QuotaError
from services.storage.space import NoSpaceError
from services.storage.streams import TooManyStreamsError
from services.storage.uploads import UploadError
from services.storage.volume import VolumeError

__all__ = ["build_app"]


def _error(status: int, exc: Exception, tus_headers: bool) -> Response:
    headers = tus.TUS_HEADERS if tus_headers else None
    return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)


def _handler(status: int | None):  # noqa: ANN202
    async def handle(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status", None) or status or 400
        return _error(code, exc, request.url.path.startswith("/tus"))
    return handle


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "volumes": sorted(request.app.state.ctx.volumes)})


def build_app(ctx: StorageContext) -> Starlette:
    """Returns the ASGI app serving ``ctx``."""
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/tus", tus.tus_options, methods=["OPTIONS"]),
            Route("/tus", tus.tus_create, methods=["POST"]),
            Route("/tus/{upload_id}", tus.tus_head, methods=["HEAD"]),
            Route("/tus/{upload_id}", tus.tus_patch, methods=["PATCH"]),
            Route("/tus/{upload_id}", tus.tus_delete, methods=["DELETE"]),
            Route("/download", transfer.download, methods=["GET"]),
            Route("/archive", transfer.archive, methods=["GET"]),
            Route("/files", file_ops.list_files, methods=["GET"]),
            Route("/mkdir", file_ops.make_directory, methods=["POST"]),
            Route("/move", file_ops.move_file, methods=["POST"]),
            Route("/delete", file_ops.delete_files, methods=["POST"]),
        ],
        exception_handlers={
            TokenError: _handler(403),
            PathError: _handler(400),
            VolumeError: _handler(409),
            QuotaError: _handler(413),
            NoSpaceError: _handler(507),
            UploadError: _handler(None),
            TooManyStreamsError: _handler(429),
        },
    )
    app.state.ctx = ctx
    return app

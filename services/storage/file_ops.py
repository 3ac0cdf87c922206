"""File operations the gateway calls with a token it minted: ``GET /files`` (list a directory; a
name no path can name listed escaped, ``escaped: true``), ``POST /mkdir``, ``POST /move``,
``POST /delete``. Each change posts its report (``by``: the token's user) and a new usage measure.

A deletion removes a tree as large as a kernel made it (millions of files: seconds to minutes), so it runs in
threads of its own (``REMOVALS_AT_ONCE``), never in the pool every download, listing and upload's last step
waits for: a tenant's deletions of huge trees, a few dozen at once, held every thread of that pool."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts.storage_reports import DirectoryCreatedReport, FileMovedReport, FilesDeletedReport
from services.storage.context import StorageContext
from services.storage.paths import split_path
from services.storage.reporting import new_report_id, now_utc

__all__ = ["REMOVALS_AT_ONCE", "delete_files", "list_files", "make_directory", "move_file"]

REMOVALS_AT_ONCE = 4
"""Deletions carried out at once (the others wait for one of these threads, not for the data plane's)."""
_removals = ThreadPoolExecutor(REMOVALS_AT_ONCE, thread_name_prefix="remove")


async def list_files(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    path = request.query_params.get("path")
    claims = ctx.authorize(request, "list", path)
    path = claims.path if path is None else "/".join(split_path(path))
    entries = await asyncio.to_thread(ctx.volume(claims).list, claims.folder, path)
    return JSONResponse({"path": path, "entries": [  # every name JSON-safe: odd ones escaped (``listed_name``)
        {"name": e.name, "type": e.type, "size": e.size, "mtime": e.mtime, "escaped": e.escaped} for e in entries]})


def _report_fields(ctx: StorageContext, claims) -> dict:  # noqa: ANN001
    return {"report_id": new_report_id(), "volume": claims.volume, "folder_id": claims.folder,
            "observed_at": now_utc()}


async def make_directory(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    claims = ctx.authorize(request, "mkdir")
    volume = ctx.volume(claims)
    await asyncio.to_thread(volume.mkdir, claims.folder, claims.path)
    ctx.reporter.post(DirectoryCreatedReport(**_report_fields(ctx, claims), path=claims.path, by=claims.user))
    return JSONResponse({"path": claims.path})


async def move_file(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    claims = ctx.authorize(request, "move")
    dst = "/".join(split_path(claims.dst))
    volume = ctx.volume(claims)
    await asyncio.to_thread(volume.move, claims.folder, claims.path, dst)
    ctx.reporter.post(FileMovedReport(**_report_fields(ctx, claims), src=claims.path, dst=dst, by=claims.user))
    return JSONResponse({"src": claims.path, "dst": dst})


async def delete_files(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    claims = ctx.authorize(request, "delete")
    volume = ctx.volume(claims)
    removed = await asyncio.get_running_loop().run_in_executor(_removals, volume.remove, claims.folder, claims.path)
    if removed:
        ctx.reporter.post(FilesDeletedReport(**_report_fields(ctx, claims), paths=[claims.path], by=claims.user))
        ctx.meter.touch(volume, claims.folder)
    return JSONResponse({"deleted": [claims.path] if removed else []})

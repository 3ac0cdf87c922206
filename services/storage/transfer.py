"""Downloads (``GET /download``: one file, single ``Range``, ETag) and archives (``GET /archive``:
a directory as a tar stream, built block by block in constant memory; links and special files
left out)."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import tarfile
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.storage.context import StorageContext

__all__ = ["archive", "download"]

CHUNK = 4 << 20
"""Bytes read from a file at once for a download."""
ARCHIVE_CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Returns the (start, end inclusive) of a single ``bytes=`` range; None when unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match[1] and not match[2]):
        return (0, size - 1) if size else None
    if not match[1]:  # a suffix: the last N bytes
        length = int(match[2])
        return (max(size - length, 0), size - 1) if length and size else None
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    return (start, end) if start < size and start <= end else None


async def _read(fd: int, start: int, end: int) -> AsyncIterator[bytes]:
    """Yields the bytes ``start..end`` of ``fd`` (then closes it) in ``CHUNK`` pieces read by a
    worker thread, the next piece read while the one before is being sent."""
    def read(offset: int) -> "asyncio.Future[bytes]":
        return asyncio.ensure_future(asyncio.to_thread(os.pread, fd, min(CHUNK, end - offset + 1), offset))

    ahead = read(start) if start <= end else None
    try:
        offset = start
        while ahead is not None:
            chunk = await asyncio.shield(ahead)
            offset += len(chunk)
            ahead = read(offset) if chunk and offset <= end else None
            if not chunk:
                break
            yield chunk
    finally:
        if ahead is not None:
            await asyncio.gather(ahead, return_exceptions=True)  # never close the fd under a read
        os.close(fd)


async def download(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    claims = ctx.authorize(request, "download")
    fd = ctx.volume(claims).open_file(claims.folder, claims.path)
    st = os.fstat(fd)
    headers = {"ETag": _etag(st), "Accept-Ranges": "bytes", "Cache-Control": "no-store",
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(claims.path.rsplit('/', 1)[-1])}"}
    ranged = "range" in request.headers and request.headers.get("if-range", headers["ETag"]) == headers["ETag"]
    if not ranged or _RANGE.fullmatch(request.headers["range"].strip()) is None:
        headers["Content-Length"] = str(st.st_size)
        return StreamingResponse(_read(fd, 0, st.st_size - 1), headers=headers,
                                 media_type="application/octet-stream")
    span = _byte_range(request.headers["range"], st.st_size)
    if span is None:
        os.close(fd)
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{st.st_size}"})
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{st.st_size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(_read(fd, start, end), status_code=206, headers=headers,
                             media_type="application/octet-stream")


def _tar_blocks(dir_fd: int) -> Iterator[bytes]:
    """Yields a tar (PAX) of the directory ``dir_fd``: headers, file data in chunks, padding."""
    for top, dirs, files, top_fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        prefix = "" if top == "." else top[2:] + "/"
        for name in sorted(dirs):
            st = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                info = tarfile.TarInfo(prefix + name)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(st.st_mtime)
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        for name in sorted(files):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=top_fd)
            except OSError:
                continue  # a link, or gone since the walk listed it
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                info = tarfile.TarInfo(prefix + name)
                info.size, info.mode, info.mtime = st.st_size, 0o644, int(st.st_mtime)
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                sent = 0
                while sent < st.st_size:  # a file that shrank meanwhile is padded with zeros
                    want = min(ARCHIVE_CHUNK, st.st_size - sent)
                    chunk = os.read(fd, want) or bytes(want)
                    sent += len(chunk)
                    yield chunk
                if st.st_size % tarfile.BLOCKSIZE:
                    yield bytes(tarfile.BLOCKSIZE - st.st_size % tarfile.BLOCKSIZE)
            finally:
                os.close(fd)
    yield bytes(tarfile.BLOCKSIZE * 2)


async def _stream_tar(dir_fd: int) -> AsyncIterator[bytes]:
    blocks = _tar_blocks(dir_fd)
    done = object()
    try:
        while (block := await asyncio.to_thread(next, blocks, done)) is not done:
            yield block  # type: ignore[misc]
    finally:
        blocks.close()
        os.close(dir_fd)


async def archive(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    path = request.query_params.get("path")
    claims = ctx.authorize(request, "archive", path)
    path = claims.path if path is None else path
    volume = ctx.volume(claims)
    with volume.open_directory(claims.folder, path) as fd:
        dir_fd = os.dup(fd)
    name = (path.rsplit("/", 1)[-1] or claims.folder) + ".tar"
    return StreamingResponse(_stream_tar(dir_fd), media_type="application/x-tar",
                             headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
                                      "Cache-Control": "no-store"})


"""Downloads (``GET /download``: one regular file, single ``Range``, ETag) and archives (``GET /archive``:
a directory as a tar stream, built block by block in constant memory; links and special files
left out). A user streams at most ``streams.MAX_STREAMS_PER_USER`` of them at once, and
``streams.MAX_ARCHIVES_PER_USER`` archives (429 past them), their places freed with the file.

The file (or the directory) is opened in a worker thread, never a FIFO's wait (``regular_files``); from
then on it is closed on every way out. A response owns it through a ``_Lease``, which the response releases
however it ends (sent, its client gone: Starlette cancels the response under uvicorn, or never started)
without awaiting anything; the file is closed then, or, when a read still runs in its worker thread, by
that read as it ends: never under a read, never left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import stat
import tarfile
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.common.tree_walk import MAX_DEPTH, Visit, walk
from services.storage.context import StorageContext
from services.storage.regular_files import NotRegularFileError, open_regular
from services.storage.volume import PosixVolume

__all__ = ["archive", "download"]

T = TypeVar("T")

CHUNK = 4 << 20
"""Bytes read from a file at once for a download."""
ARCHIVE_CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_HUGE = 10**19
"""What a position of more than 19 digits stands for: past the end of any file (never given to ``int``,
which refuses more than 4300 digits)."""


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _position(digits: str) -> int:
    """Returns a ``Range`` position; more than 19 digits (leading zeros aside) stand for ``_HUGE``."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else _HUGE


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Returns the (start, end inclusive) of a single ``bytes=`` range; None when unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match[1] and not match[2]):
        return (0, size - 1) if size else None
    if not match[1]:  # a suffix: the last N bytes
        length = _position(match[2])
        return (max(size - length, 0), size - 1) if length and size else None
    start = _position(match[1])
    end = min(_position(match[2]), size - 1) if match[2] else size - 1
    return (start, end) if start < size and start <= end else None


class _Lease:
    """What worker threads read (a file, a tar being built), freed once — by ``free`` — when its owner let go
    (``release``, which never waits: a response cancelled when its client went away must not await) and no
    work on it runs: at once, or by the last such work as it ends (never closed under a read)."""

    def __init__(self, free: Callable[[], None]) -> None:
        self._free = free
        self._lock = threading.Lock()
        self._running = 0
        self._released = False

    def run(self, work: Callable[..., T], *args: Any) -> T:
        """Returns ``work(*args)``, in the calling (worker) thread; raises ``EOFError`` once released."""
        with self._lock:
            if self._released:
                raise EOFError("the stream is over")
            self._running += 1
        try:
            return work(*args)
        finally:
            self._leave(owner=False)

    def release(self) -> None:
        """Lets go of the resource (idempotent): it is freed now, or when the work running on it ends."""
        self._leave(owner=True)

    def _leave(self, owner: bool) -> None:
        with self._lock:
            if owner:
                if self._released:
                    return
                self._released = True
            else:
                self._running -= 1
            last = self._released and not self._running
        if last:
            self._free()


class _LeasedResponse(StreamingResponse):
    """A streamed response that releases its ``lease`` however it ends: sent, its client gone, cancelled,
    its body never started (a body's own ``finally`` runs only once it started)."""

    def __init__(self, lease: _Lease, content: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.lease = lease

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.release()


def _retrieved(task: "asyncio.Future[Any]") -> None:
    if not task.cancelled():
        task.exception()  # a read-ahead left behind: its error is nobody's


async def _read(fd: int, start: int, end: int, lease: _Lease | None = None) -> AsyncIterator[bytes]:
    """Yields the bytes ``start..end`` of ``fd`` in ``CHUNK`` pieces read by a worker thread, the next piece
    read while the one before is being sent; then releases ``lease`` (default: one closing ``fd``): the fd is
    closed once no read of it runs, without awaiting one (a cancelled stream may await nothing)."""
    lease = lease or _Lease(functools.partial(os.close, fd))

    def read(offset: int) -> "asyncio.Future[bytes]":
        size = min(CHUNK, end - offset + 1)
        ahead = asyncio.ensure_future(asyncio.to_thread(lease.run, os.pread, fd, size, offset))
        ahead.add_done_callback(_retrieved)
        return ahead

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
            ahead.cancel()  # one not started never starts; one reading ends in its thread, then closes the fd
        lease.release()


async def _in_thread(opener: Callable[..., int], *args: Any) -> int:
    """Returns the fd ``opener(*args)`` opens in a worker thread (a walk and an open may wait on the disk);
    when the caller is cancelled meanwhile, the fd is closed as the open ends, never leaked."""
    opening = asyncio.ensure_future(asyncio.to_thread(opener, *args))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _close_opened(opening: "asyncio.Future[int]") -> None:
    if not opening.cancelled() and opening.exception() is None:
        os.close(opening.result())


def _span(request: Request, etag: str, size: int) -> tuple[int, int, int]:
    """Returns (status, start, end inclusive) of a download's answer: 200 the whole file, 206 the range
    asked for (when ``If-Range``, if any, names ``etag``), 416 a range past the end (start, end unused)."""
    header = request.headers.get("range", "")
    if not header or request.headers.get("if-range", etag) != etag or not _RANGE.fullmatch(header.strip()):
        return 200, 0, size - 1
    span = _byte_range(header, size)
    return (416, 0, -1) if span is None else (206, *span)


def _then(free: Callable[[], None], end: Callable[[], None]) -> Callable[[], None]:
    """Returns what runs ``free`` and then, whatever it raised, ``end`` (the stream's place among its user's)."""
    def both() -> None:
        try:
            free()
        finally:
            end()
    return both


async def download(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    claims = ctx.authorize(request, "download")
    end = ctx.streams.acquire(claims.user)  # a user's streams at once are bounded (``streams``): 429 past them
    try:
        fd = await _in_thread(ctx.volume(claims).open_file, claims.folder, claims.path)
    except BaseException:
        end()
        raise
    lease = _Lease(_then(functools.partial(os.close, fd), end))
    try:  # the fd is closed on every way out, until a response owns it
        st = os.fstat(fd)
        headers = {"ETag": _etag(st), "Accept-Ranges": "bytes", "Cache-Control": "no-store",
                   "Content-Disposition": f"attachment; filename*=UTF-8''{quote(claims.path.rsplit('/', 1)[-1])}"}
        status, start, end = _span(request, headers["ETag"], st.st_size)
        if status == 416:
            lease.release()
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{st.st_size}"})
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{st.st_size}"
        headers["Content-Length"] = str(end - start + 1)
        return _LeasedResponse(lease, _read(fd, start, end, lease), status_code=status, headers=headers,
                               media_type="application/octet-stream")
    except BaseException:
        lease.release()
        raise


def _tar_blocks(dir_fd: int) -> Iterator[bytes]:
    """Yields a tar (PAX) of the directory ``dir_fd``: headers, file data in chunks, padding; raises
    ``TooDeepError`` (the stream is cut) at a directory more than ``MAX_DEPTH`` levels down."""
    with contextlib.closing(walk(dir_fd, max_depth=MAX_DEPTH)) as tops:
        yield from _tar_tree(tops)
    yield bytes(tarfile.BLOCKSIZE * 2)


def _tar_tree(tops: Iterator[Visit]) -> Iterator[bytes]:
    """Yields the tar blocks of the directories ``tops`` (a walk): their subdirectories' and files' headers,
    file data in chunks, padding; links and special files left out."""
    for top in tops:
        prefix = top.path() + "/" if top.depth else ""
        dirs, files, top_fd = top.dirs, top.files, top.fd
        for name in sorted(dirs):
            st = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                info = tarfile.TarInfo(prefix + name)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(st.st_mtime)
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        for name in sorted(files):
            try:
                fd = open_regular(name, top_fd)
            except (OSError, NotRegularFileError):
                continue  # a link or a special file, or gone since the walk listed it
            try:
                st = os.fstat(fd)
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


def _end_tar(blocks: Generator[bytes, None, None], dir_fd: int) -> None:
    try:
        blocks.close()  # never while a worker thread runs it: the lease frees it after the last step
    finally:
        os.close(dir_fd)


async def _stream_tar(blocks: Iterator[bytes], lease: _Lease) -> AsyncIterator[bytes]:
    """Yields the blocks of ``blocks``, each built by a worker thread; then releases ``lease``."""
    done = object()
    try:
        while (block := await asyncio.to_thread(lease.run, next, blocks, done)) is not done:
            yield block  # type: ignore[misc]
    finally:
        lease.release()


def _directory(volume: PosixVolume, folder: str, path: str) -> int:
    """Returns an fd of a directory of the folder (the caller closes it)."""
    with volume.open_directory(folder, path) as fd:
        return os.dup(fd)


async def archive(request: Request) -> Response:
    ctx: StorageContext = request.app.state.ctx
    path = request.query_params.get("path")
    claims = ctx.authorize(request, "archive", path)
    path = claims.path if path is None else path
    end_archive = ctx.archives.acquire(claims.user)
    try:
        end = _then(ctx.streams.acquire(claims.user), end_archive)
    except BaseException:
        end_archive()
        raise
    try:
        dir_fd = await _in_thread(_directory, ctx.volume(claims), claims.folder, path)
    except BaseException:
        end()
        raise
    blocks = _tar_blocks(dir_fd)
    lease = _Lease(_then(functools.partial(_end_tar, blocks, dir_fd), end))
    name = (path.rsplit("/", 1)[-1] or claims.folder) + ".tar"
    return _LeasedResponse(lease, _stream_tar(blocks, lease), media_type="application/x-tar",
                           headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
                                    "Cache-Control": "no-store"})

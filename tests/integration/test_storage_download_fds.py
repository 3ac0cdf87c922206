"""Downloads and archives never leak a file descriptor: not when their client goes away mid-stream (the
response cancelled under its read-ahead), not when a ``Range`` header's numbers are too long for ``int``,
not when a request is refused after its file was opened. The service runs in this process: its open fds
are this process's, ``/proc/self/fd``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.deep_trees import open_fds
from tests.support.storage import RunningStorage, fds_naming, running_storage
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio

ROUNDS = 8
SIZE = 64 << 20
"""A sparse file: far more than the sockets' buffers hold, so every interrupted stream is cut mid-way."""
HUGE = "9" * 5000
"""More digits than ``int()`` converts (Python's 4300-digit limit)."""


async def _cut_short(storage: RunningStorage, route: str, token: str, path: str) -> None:
    """Asks for ``route`` over a raw connection, reads the start of the answer and drops the connection."""
    url = urlsplit(storage.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(f"GET {route}?token={token}&path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readexactly(1 << 20)  # the stream has begun: its read-ahead is running or pending
    writer.transport.abort()  # a reset, as a client killed mid-download


async def _settled(before: int, root: Path) -> bool:
    """True once no fd names the volume and the process has no more fds than ``before`` (uvicorn closes
    the dropped connections' sockets as it notices them)."""
    return not fds_naming(root) and open_fds() <= before


async def test_interrupted_downloads_and_archives_close_their_files(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    async with running_storage(root) as storage:
        folder = storage.new_folder()
        with open(storage.volume.folder_path(folder) / "big.bin", "wb") as f:
            f.truncate(SIZE)
        async with httpx.AsyncClient(timeout=60) as http:  # once whole: what the service opens lazily is open
            whole = await http.get(storage.url + "/download", params={"token": storage.token(folder, "big.bin",
                                                                                                  "download")})
            assert whole.status_code == 200 and len(whole.content) == SIZE
        before = open_fds()
        for _ in range(ROUNDS):
            await _cut_short(storage, "/download", storage.token(folder, "big.bin", "download"), "big.bin")
            await _cut_short(storage, "/archive", storage.token(folder, "", "archive"), "")
        await async_wait_for(lambda: _settled(before, root), timeout=30, message=(
            f"fds left open after {ROUNDS} interrupted downloads and archives: {sorted(fds_naming(root))}, "
            f"{open_fds()} fds now, {before} before"))


async def test_ranges_with_numbers_past_int_s_limit_are_answered_and_close_the_file(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    async with running_storage(root) as storage, httpx.AsyncClient(timeout=60) as http:
        folder = storage.new_folder()
        (storage.volume.folder_path(folder) / "f.bin").write_bytes(b"0123456789")

        async def get(value: str) -> httpx.Response:
            token = storage.token(folder, "f.bin", "download")
            return await http.get(storage.url + "/download", params={"token": token}, headers={"Range": value})

        assert (await get("bytes=2-4")).content == b"234"  # one whole request: the client's connection is open
        before = open_fds()
        for _ in range(ROUNDS):
            beyond = await get(f"bytes={HUGE}-")  # starts past any file's end
            assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10"
            to_end = await get(f"bytes=3-{HUGE}")  # an end past the file's is its last byte
            assert (to_end.status_code, to_end.content, to_end.headers["content-range"]) == (
                206, b"3456789", "bytes 3-9/10")
            suffix = await get(f"bytes=-{HUGE}")  # the last N bytes, N more than there are: all of them
            assert (suffix.status_code, suffix.content) == (206, b"0123456789")
            padded = await get(f"bytes={'0' * 5000}4-{'0' * 5000}5")  # leading zeros: still 4-5
            assert (padded.status_code, padded.content) == (206, b"45")
        await async_wait_for(lambda: _settled(before, root), timeout=30, message=(
            f"fds left open after {ROUNDS * 4} ranged requests: {sorted(fds_naming(root))}, "
            f"{open_fds()} fds now, {before} before"))

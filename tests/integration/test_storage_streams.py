"""One user streams a bounded number of downloads and archives at once (``streams.MAX_STREAMS_PER_USER``).

Found by attack: one download token of a large (sparse) file and connections that send the request and never
read held about 12 MB of the service's memory each (its read chunks) and a file descriptor, with no bound: 50
took 600 MB, a few thousand every byte of the machine, for every tenant. Past the bound a stream is refused
(429); its place comes back when a stream ends (here: its client gone); another user is not refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from services.storage import streams
from tests.support.storage import running_storage
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.asyncio

LIMIT = 3
SIZE = 1 << 30
"""A sparse file: far more than the sockets' buffers hold, so a stream whose client reads nothing stays open."""


async def _stalled(url: str, route: str, token: str) -> asyncio.StreamWriter:
    """Asks for ``route`` and reads nothing but the answer's head (the stream stays open); returns the connection."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {route}?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return writer


async def test_a_user_streams_a_bounded_number_of_downloads_at_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(streams, "MAX_STREAMS_PER_USER", LIMIT)
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=60) as http:
        folder = storage.new_folder()
        with open(storage.volume.folder_path(folder) / "big.bin", "wb") as f:
            f.truncate(SIZE)
        (storage.volume.folder_path(folder) / "small.txt").write_text("hi")
        held = [await _stalled(storage.url, "/download", storage.token(folder, "big.bin", "download"))
                for _ in range(LIMIT - 1)]
        held.append(await _stalled(storage.url, "/archive", storage.token(folder, "", "archive")))

        refused = await http.get(storage.url + "/download", params={"token": storage.token(folder, "small.txt",
                                                                                              "download")})
        assert refused.status_code == 429, refused.text
        assert "at once" in refused.json()["error"]
        archive = await http.get(storage.url + "/archive", params={"token": storage.token(folder, "", "archive")})
        assert archive.status_code == 429
        others = await http.get(storage.url + "/download", params={"token": storage.token(
            folder, "small.txt", "download", user="bob")})
        assert others.status_code == 200 and others.text == "hi"

        held.pop().transport.abort()  # a client gone: its stream ends, its place comes back

        async def served() -> bool:
            answer = await http.get(storage.url + "/download", params={"token": storage.token(folder, "small.txt",
                                                                                                 "download")})
            return answer.status_code == 200
        await async_wait_for(served, timeout=30, message="a stream's place did not come back when its client left")
        for writer in held:
            writer.transport.abort()
        await async_wait_for(lambda: storage.ctx.streams.open("alice") == 0, timeout=30,
                             message="the streams of clients gone are still counted")


async def test_a_user_streams_fewer_archives_than_downloads_at_once(tmp_path: Path, monkeypatch) -> None:
    """An archive holds its walk's listings (a kernel's directory of a million names: about 95 MB each, 760 MB for
    eight): a user streams at most ``MAX_ARCHIVES_PER_USER`` of them, downloads aside."""
    monkeypatch.setattr(streams, "MAX_ARCHIVES_PER_USER", 2)
    async with running_storage(tmp_path / "vol") as storage, httpx.AsyncClient(timeout=60) as http:
        folder = storage.new_folder()
        with open(storage.volume.folder_path(folder) / "big.bin", "wb") as f:
            f.truncate(SIZE)
        (storage.volume.folder_path(folder) / "small.txt").write_text("hi")
        held = [await _stalled(storage.url, "/archive", storage.token(folder, "", "archive")) for _ in range(2)]
        refused = await http.get(storage.url + "/archive", params={"token": storage.token(folder, "", "archive")})
        assert refused.status_code == 429, refused.status_code
        assert "archives" in refused.json()["error"]
        download = await http.get(storage.url + "/download", params={"token": storage.token(folder, "small.txt",
                                                                                               "download")})
        assert download.status_code == 200
        for writer in held:
            writer.transport.abort()
        await async_wait_for(lambda: storage.ctx.archives.open("alice") == 0 == storage.ctx.streams.open("alice"),
                             timeout=30, message="the archives of clients gone are still counted")

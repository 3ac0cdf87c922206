"""A download reads its file in pieces, the next read while the one before is sent: every range
comes back whole and in order, and the file is closed once the stream ends or is dropped early."""

from __future__ import annotations

import os

import pytest

from services.storage import transfer

pytestmark = pytest.mark.asyncio

DATA = bytes(range(256)) * 3 + b"tail"


def _open(tmp_path) -> int:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    return os.open(path, os.O_RDONLY)


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@pytest.mark.parametrize(("start", "end"), [(0, len(DATA) - 1), (5, 5), (6, 700), (len(DATA) - 3, len(DATA) - 1)])
async def test_a_range_is_read_whole_in_pieces_and_the_file_closed(tmp_path, monkeypatch, start, end):
    monkeypatch.setattr(transfer, "CHUNK", 7)
    fd = _open(tmp_path)
    pieces = [piece async for piece in transfer._read(fd, start, end)]
    assert b"".join(pieces) == DATA[start:end + 1]
    assert all(len(piece) <= 7 for piece in pieces)
    assert _closed(fd)


async def test_a_file_shrunk_under_a_download_ends_the_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "CHUNK", 100)
    fd = _open(tmp_path)
    os.truncate(tmp_path / "f.bin", 150)
    assert b"".join([piece async for piece in transfer._read(fd, 0, len(DATA) - 1)]) == DATA[:150]
    assert _closed(fd)


async def test_a_download_dropped_early_waits_for_its_read_ahead_and_closes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "CHUNK", 10)
    fd = _open(tmp_path)
    stream = transfer._read(fd, 0, len(DATA) - 1)
    assert await anext(stream) == DATA[:10]
    await stream.aclose()
    assert _closed(fd)

"""A request's head (request line and headers) is bounded (``services.common.request_deadlines.MAX_HEAD``): uvicorn's
httptools protocol has no bound, so anyone who reached the port, with no credential, could send gigabytes of headers
within the headers' deadline and the gateway held them all in memory (2 GB in 8 s over loopback, one connection).
A head over the bound is answered 431 and its connection closed; the gateway and the storage service alike."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import pytest

from services.common.request_deadlines import MAX_HEAD
from tests.support.gateway import clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.storage import running_storage

pytestmark = pytest.mark.asyncio

ANSWER_WITHIN = 20.0
"""Seconds a test waits for the server's answer."""


async def answer_to(url: str, head: bytes) -> bytes:
    """Sends ``head`` (and an empty line) on a new connection; returns the status line of the answer, b"" when the
    server closed the connection without one."""
    address = urlparse(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(head + b"\r\n")
        try:
            await writer.drain()
        except ConnectionError:
            pass  # refused before it read everything: its answer is still there to read
        return await asyncio.wait_for(reader.readline(), ANSWER_WITHIN)
    finally:
        writer.close()


def header_of(size: int) -> bytes:
    return b"X-Padding: " + b"a" * size + b"\r\n"


OVER = MAX_HEAD * 8
"""A head's size past the bound by more than one read of the server (256 KiB), so that it is refused however the
bytes arrive."""


async def test_the_gateway_refuses_a_head_over_the_bound_and_answers_one_within_it(served: str) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    assert (await answer_to(served, request + header_of(MAX_HEAD // 2))).startswith(b"HTTP/1.1 200")
    assert (await answer_to(served, request + header_of(OVER))).startswith(b"HTTP/1.1 431")
    assert (await answer_to(served, request + header_of(1000) * (OVER // 1000))).startswith(b"HTTP/1.1 431")
    long_url = b"GET /healthz?" + b"q" * OVER + b" HTTP/1.1\r\nHost: x\r\n"
    assert (await answer_to(served, long_url)).startswith(b"HTTP/1.1 431")


async def test_the_storage_service_refuses_a_head_over_the_bound(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        assert (await answer_to(storage.url, request + header_of(OVER))).startswith(b"HTTP/1.1 431")

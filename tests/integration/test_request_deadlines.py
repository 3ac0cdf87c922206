"""A connection to the gateway or the storage service that does not send its request (nothing, headers a
byte at a time, or, to the gateway, a body short of its length) is closed at its deadline
(``services.common.request_deadlines``); before, it was held for ever, with no credential needed: a few
thousand of them left the service unable to accept anyone; a websocket that sends no ``connection_init`` is
closed as soon (strawberry held it a minute). Requests that arrive, websockets and slow uploads are not cut. The deadlines are shortened for the test; every wait is for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import websockets

from services.common.request_deadlines import DeadlineHttpToolsProtocol
from services.gateway.coalesced_writes import GatewayHttpProtocol
from services.sdk.client import BerthClient
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures
from tests.support.storage import running_storage

pytestmark = pytest.mark.asyncio

CLOSED_WITHIN = 20.0
"""Seconds a test waits for the server to close a connection whose deadline (0.3 s here) passed."""


@pytest.fixture(autouse=True)
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DeadlineHttpToolsProtocol, "headers_within", 0.3)
    monkeypatch.setattr(GatewayHttpProtocol, "body_within", 0.3)
    monkeypatch.setattr(DeadlineHttpToolsProtocol, "rest_within", 0.3)
    monkeypatch.setattr("services.gateway.view.INIT_WITHIN", 0.3)


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    address = urlparse(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def closed_by_the_server(reader: asyncio.StreamReader) -> bool:
    """Reads until the server closes the connection (True), for at most ``CLOSED_WITHIN`` seconds (False)."""
    try:
        async with asyncio.timeout(CLOSED_WITHIN):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False


async def test_the_gateway_closes_connections_whose_request_does_not_arrive(served: str) -> None:
    async with connection(served) as (silent, _), connection(served) as (trickled, trickling), \
            connection(served) as (short, shortening):
        trickling.write(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")  # and no more
        shortening.write(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"query\":")  # 10 bytes of 1000
        assert await closed_by_the_server(silent)
        assert await closed_by_the_server(trickled)
        assert await closed_by_the_server(short)


async def test_the_gateway_closes_a_websocket_that_does_not_send_its_connection_init(served: str) -> None:
    async with websockets.connect(served.replace("http://", "ws://") + "/graphql",
                                  subprotocols=["graphql-transport-ws"]) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), CLOSED_WITHIN)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408  # graphql-ws: initialisation timeout


async def test_the_gateway_answers_requests_that_arrive_and_keeps_a_websocket_past_the_deadline(
    served: str, keys: Keys,
) -> None:
    async with connection(served) as (reader, writer):
        for _ in range(2):  # two requests on one kept-alive connection
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), CLOSED_WITHIN)
            assert status.startswith(b"HTTP/1.1 "), status
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    async with BerthClient(served, *keys.alice) as alice:
        token = await alice.issue_token()
    ws_url = served.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws, \
            connection(served) as (silent, _):
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), CLOSED_WITHIN))["type"] == "connection_ack"
        assert await closed_by_the_server(silent)  # the deadline has passed for both
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), CLOSED_WITHIN))["type"] == "pong"


async def test_the_storage_service_closes_silent_connections_but_not_slow_uploads(tmp_path: Path) -> None:
    async with running_storage(tmp_path / "vol") as storage:
        folder = storage.new_folder()
        token = storage.token(folder, "slow.bin", "upload", max_bytes=1 << 20)
        async with connection(storage.url) as (reader, writer), connection(storage.url) as (silent, _):
            writer.write(f"POST /tus HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 10\r\n"
                         f"Content-Type: application/offset+octet-stream\r\nContent-Length: 10\r\n"
                         f"Authorization: Bearer {token}\r\n\r\n12345".encode())
            assert await closed_by_the_server(silent)  # the headers' deadline passed; the body has none
            writer.write(b"67890")
            status = await asyncio.wait_for(reader.readline(), CLOSED_WITHIN)
            assert status.startswith(b"HTTP/1.1 201"), status
        assert (storage.volume.folder_path(folder) / "slow.bin").read_bytes() == b"1234567890"


async def test_a_body_trickled_on_after_its_refusal_does_not_hold_the_connection(tmp_path: Path) -> None:
    """A request refused before its body was read (a bad token) keeps its connection for the rest of the body:
    sent a byte at a time, it held it for ever (uvicorn's keep-alive timer restarts at every byte)."""
    async with running_storage(tmp_path / "vol") as storage, connection(storage.url) as (reader, writer):
        writer.write(b"POST /tus HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1000000\r\n"
                     b"Content-Type: application/offset+octet-stream\r\nContent-Length: 1000000\r\n"
                     b"Authorization: Bearer not-a-token\r\n\r\n0123456789")
        status = await asyncio.wait_for(reader.readline(), CLOSED_WITHIN)
        assert status.startswith(b"HTTP/1.1 403"), status
        closed = asyncio.ensure_future(closed_by_the_server(reader))
        async with asyncio.timeout(CLOSED_WITHIN):
            while not closed.done():
                writer.write(b"x")
                await asyncio.sleep(0.1)  # the trickle's pace: what the test sends, not a wait for the server
        assert closed.result()

"""The gateway's HTTP protocol writes a response in one write (``services/gateway/coalesced_writes.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from services.gateway.coalesced_writes import FLUSH_AT, CoalescingHttpToolsProtocol, CoalescingTransport
from tests.support.waiting import async_wait_for

BODY = b'{"data":{"__typename":"Query"}}'


class RecordingTransport(asyncio.Transport):
    """A connection's far end that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


async def _serve_one(protocol_class: type[HttpToolsProtocol]) -> list[bytes]:
    config = uvicorn.Config(_app, lifespan="off", log_level="warning", access_log=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={},
                              _loop=asyncio.get_running_loop())
    far_end = RecordingTransport()
    protocol.connection_made(far_end)
    protocol.data_received(b"GET /graphql HTTP/1.1\r\nHost: berth\r\n\r\n")
    await async_wait_for(lambda: b"".join(far_end.writes).endswith(BODY), timeout=10)
    protocol.connection_lost(None)
    return far_end.writes


async def test_a_response_goes_out_in_one_write() -> None:
    writes = await _serve_one(CoalescingHttpToolsProtocol)
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\n" + BODY)


async def test_uvicorn_alone_writes_headers_and_body_apart() -> None:
    """What the coalescing is for: the plain protocol writes twice (if uvicorn ever writes once, it is moot)."""
    assert len(await _serve_one(HttpToolsProtocol)) == 2


async def test_writes_held_in_one_step_go_out_before_a_close() -> None:
    far_end = RecordingTransport()
    transport = CoalescingTransport(far_end, asyncio.get_running_loop())
    transport.write(b"a")
    transport.writelines([b"b", bytearray(b"c")])
    assert far_end.writes == [] and transport.get_write_buffer_size() == 3
    transport.close()
    assert far_end.writes == [b"abc"] and far_end.closed


async def test_a_large_write_is_not_held() -> None:
    far_end = RecordingTransport()
    transport = CoalescingTransport(far_end, asyncio.get_running_loop())
    transport.write(b"h")
    transport.write(b"x" * FLUSH_AT)
    assert far_end.writes == [b"h" + b"x" * FLUSH_AT]


async def test_abort_drops_what_is_held_and_a_closed_peer_gets_nothing() -> None:
    loop = asyncio.get_running_loop()
    far_end = RecordingTransport()
    transport = CoalescingTransport(far_end, loop)
    transport.write(b"held")
    transport.abort()
    await asyncio.sleep(0)  # the step after: nothing flushes a write that abort dropped
    assert far_end.writes == [] and far_end.aborted

    gone = RecordingTransport()
    transport = CoalescingTransport(gone, loop)
    transport.write(b"late")
    gone.closed = True  # the peer went away before the step ended
    transport.flush()
    assert gone.writes == []

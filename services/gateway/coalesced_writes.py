"""One write per response: uvicorn writes an HTTP response's headers and its body in two
``transport.write`` calls, so each response cost two ``send`` syscalls and reached the client as
two TCP segments (TCP_NODELAY is on), each a wake-up for the client too. ``CoalescingTransport``
holds what is written during one step of the event loop and writes it at once at the end of that
step (``call_soon``): a response written in one step goes out in one ``send``. A websocket's frames
written in one step go out together too.

``CoalescingHttpToolsProtocol`` is uvicorn's httptools protocol on such a transport; ``GatewayHttpProtocol``,
the one the gateway passes as ``uvicorn.Config(http=...)``, also has the deadlines of a request's arrival.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.request_deadlines import DeadlineHttpToolsProtocol

__all__ = ["BODY_WITHIN", "CoalescingHttpToolsProtocol", "CoalescingTransport", "FLUSH_AT", "GatewayHttpProtocol"]

BODY_WITHIN = 60.0
"""Seconds a request's body (at most 1 MiB) has to arrive after its headers."""
FLUSH_AT = 64 * 1024
"""Bytes held at which a write goes out at once (a large body is not copied into the held bytes)."""


class CoalescingTransport(asyncio.Transport):
    """Delegates to ``transport``; writes made in one loop step go out in one write at its end.
    ``close`` and ``write_eof`` write what is held first; ``abort`` drops it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_AT:
            self.flush()
        elif self._flush is None:
            self._flush = self._loop.call_soon(self.flush)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Writes what is held now."""
        data = self._take()
        if data and not self._transport.is_closing():  # the peer went away: what it would have read goes too
            self._transport.write(data)

    def _take(self) -> bytes:
        """Returns what is held (b"" when nothing) and holds nothing more, no flush pending."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        return data

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._take()
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP protocol writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))


class GatewayHttpProtocol(DeadlineHttpToolsProtocol, CoalescingHttpToolsProtocol):
    """The gateway's: one write per response, and a request's headers and body within their deadlines
    (``services.common.request_deadlines``; a body is read whole before its request is authenticated)."""

    body_within = BODY_WITHIN

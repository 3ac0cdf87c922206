"""Deadlines for receiving an HTTP request, so that a client cannot hold a connection by sending nothing.

uvicorn closes a connection idle *between* requests (``timeout_keep_alive``), but none that never sends a
request, or sends its headers (or body) a byte at a time: each such connection is a socket and a file
descriptor held for ever, and a few thousand of them, opened by anyone who reaches the port and with no
credential at all (a request is authenticated once it has arrived), leave the service unable to accept
anyone else (slowloris; uvicorn issue #157). ``DeadlineHttpToolsProtocol`` closes a connection whose request's
headers are not complete ``headers_within`` seconds after the connection opened or the request began, and,
with ``body_within``, one whose body is not complete that long after its headers; and, whatever
``body_within``, one whose body is still arriving ``rest_within`` seconds after its response went (a refusal
answered before the body was read: uvicorn keeps the connection for the rest of it, which a client could send a
byte every few seconds for ever). A websocket, once upgraded, is the websocket protocol's (its own pings and
timeouts).

A request's head (request line and headers) is bounded too, ``MAX_HEAD`` bytes: httptools and uvicorn keep whatever
arrives before the empty line, so a client with no credential sent gigabytes of headers within the deadline and the
service held them all in memory. A head that grows past the bound is answered 431 and its connection closed.

Pass it (or a subclass: ``body_within``; another protocol class of httptools' after it) as ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = ["HEADERS_WITHIN", "MAX_HEAD", "REST_WITHIN", "DeadlineHttpToolsProtocol"]

log = logging.getLogger(__name__)

HEADERS_WITHIN = 10.0
"""Seconds a connection has to send a request's headers (a client sends them in one packet)."""
REST_WITHIN = 60.0
"""Seconds the rest of a request's body has once its response went (a client sending it on to read the answer)."""
MAX_HEAD = 64 * 1024
"""Bytes a request's head may take, at most (nginx takes 32 KiB, Node 16 KiB; a signed request's is under 1 KiB).
It is counted by what arrives before the head is complete, so the parser holds at most one read (256 KiB) more."""


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines of this module (before another subclass of it, a mixin)."""

    headers_within: float = HEADERS_WITHIN
    body_within: float | None = None
    """Seconds a request's body has, after its headers; None: no deadline (uploads that take hours)."""
    rest_within: float = REST_WITHIN

    _deadline: asyncio.TimerHandle | None = None
    _body_arriving = False
    _head_bytes = 0
    """Bytes of the head arriving, counted by the reads that began and ended within it."""
    _head_complete = False
    _requests_ended = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.headers_within, "its request's headers")

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        ended_before = self._requests_ended
        super().data_received(data)
        if self._head_complete or self._requests_ended != ended_before:
            return  # a read that ended a head or a request: what follows in it is below one read, not counted
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD and not self.transport.is_closing():
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.headers_within, "its request's headers")  # the next request of a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        self._head_complete = True
        super().on_headers_complete()
        self._body_arriving = not self.parser.should_upgrade()
        if self.body_within is not None and self._body_arriving:
            self._arm(self.body_within, "its request's body")

    def on_message_complete(self) -> None:
        self._disarm()
        self._body_arriving = False
        self._head_complete, self._head_bytes = False, 0  # the next request's head, on a kept-alive connection
        self._requests_ended += 1
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._body_arriving:
            self._arm(self.rest_within, "the rest of a request's body after its response")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, what: str) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(seconds, self._expired, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse_head(self) -> None:
        """Answers 431 and closes the connection: the head arriving is over ``MAX_HEAD``."""
        log.debug("closing the connection of %s: a request's head over %d bytes", self.client, MAX_HEAD)
        message = f"request header fields too large: a request's line and headers take at most {MAX_HEAD} bytes"
        self.transport.write(b"".join([
            STATUS_LINE[431], b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(message), b"connection: close\r\n\r\n", message.encode(),
        ]))
        self.transport.close()

    def _expired(self, seconds: float, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("closing the connection of %s: %s did not arrive within %.0f s", self.client, what, seconds)
            self.transport.close()

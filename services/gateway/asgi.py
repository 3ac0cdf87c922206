"""Tiny ASGI helpers: read a request body, replay it, answer with JSON, read headers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "BodyTooLargeError", "DeniedHandshakeFilter", "Scope", "deny_websocket", "error_body", "headers_of", "read_body",
    "replay", "send_json", "signed_path",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLargeError(Exception):
    """Raised when a request body exceeds the limit."""


def headers_of(scope: Scope) -> dict[str, str]:
    """Returns the request headers with lower-case names (the last value wins)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def signed_path(scope: Scope) -> str:
    """Returns the path that a client signs: the raw request path plus ``?query`` when there is one."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope.get("path", "/")
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def read_body(receive: Receive, limit: int) -> bytes:
    """Returns the whole request body; raises ``BodyTooLargeError`` past ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """Returns a ``receive`` that yields ``body`` once, then defers to the original (disconnects)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def error_body(code: str, message: str) -> dict[str, Any]:
    """Returns a GraphQL-shaped error document."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


async def send_json(send: Send, status: int, document: Any, headers: dict[str, str] | None = None,
                    *, kind: str = "http") -> None:
    """Sends a complete JSON response (``kind`` "websocket.http": a websocket handshake's denial)."""
    body = json.dumps(document).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": f"{kind}.response.start", "status": status, "headers": raw})
    await send({"type": f"{kind}.response.body", "body": body})


async def deny_websocket(scope: Scope, receive: Receive, send: Send, status: int, document: Any,
                         headers: dict[str, str], close_code: int, reason: str) -> None:
    """Refuses a websocket handshake: with an HTTP ``status`` response where the server can send one
    (the ASGI ``websocket.http.response`` extension, as uvicorn has), else by closing it with ``close_code``
    and ``reason`` (which the server turns into a 403)."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send_json(send, status, document, headers, kind="websocket.http")
    else:
        await send({"type": "websocket.close", "code": close_code, "reason": reason[:120]})


class DeniedHandshakeFilter(logging.Filter):
    """Drops uvicorn's "ASGI callable returned without completing handshake." error: its websockets-sansio
    protocol logs it after every handshake ``deny_websocket`` refused with an HTTP response (it marks only
    an accepted one complete), so each refused upgrade (a rate limit, a tunnel to a port nothing listens on)
    would log an error, as many as a client likes. The gateway's websocket apps either accept or deny."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ASGI callable returned without completing handshake")

"""Subscriptions over ONE warm graphql-transport-ws connection per client.

Opening a websocket and authenticating it (``connection_init`` -> ``connection_ack``) cost
about as much as a whole ``execute`` round trip once it is open, so a client keeps its
connection and runs every subscription on it, each under its own operation id (the protocol
multiplexes them). The connection opens on the first subscription, and again after it was lost
(the gateway restarted, the network dropped): a subscription running when it is lost ends with
``BerthAPIError("CONNECTION_CLOSED")``, the next one opens a new connection. A subscription left
before the server completed it (the caller stopped iterating) is completed towards the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from contracts.execution import MAX_EXEC_INPUT
from services.sdk.errors import BerthAPIError, raise_first

__all__ = ["PROTOCOL", "SubscriptionChannel"]

PROTOCOL = "graphql-transport-ws"
OPEN_TIMEOUT = 30.0


@dataclass
class _Lost:
    """Put in a subscription's queue when its connection is gone (``error``: how it closed)."""

    error: ConnectionClosed | None


class SubscriptionChannel:
    """The client's websocket to ``url``, authenticated with ``connection_params()`` on each
    (re)connect, shared by its subscriptions."""

    def __init__(self, url: str, connection_params: Callable[[], dict[str, str]]) -> None:
        self._url = url
        self._params = connection_params
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._ops: dict[str, tuple[ClientConnection, asyncio.Queue[dict[str, Any] | _Lost]]] = {}
        self._ids = itertools.count(1)
        self.connects = 0
        """How many times the websocket was opened (tests, benchmarks)."""

    async def subscribe(
        self, query: str, variables: dict[str, Any] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yields the ``data`` of each result of a subscription until the server completes it."""
        ws = await self._connection()
        op_id = str(next(self._ids))
        queue: asyncio.Queue[dict[str, Any] | _Lost] = asyncio.Queue()
        self._ops[op_id] = (ws, queue)
        ended = False
        try:
            try:
                await ws.send(json.dumps({"type": "subscribe", "id": op_id,
                                          "payload": {"query": query, "variables": variables or {}}}))
            except ConnectionClosed as exc:
                ended = True
                raise closed_error(exc) from exc
            while True:
                message = await queue.get()
                if isinstance(message, _Lost):
                    ended = True
                    if message.error is None:
                        return
                    raise closed_error(message.error) from message.error
                kind = message.get("type")
                if kind == "next":
                    payload = message.get("payload") or {}
                    if payload.get("errors"):
                        raise_first(payload["errors"])
                    yield payload.get("data") or {}
                elif kind == "error":
                    ended = True
                    raise_first(message.get("payload") or [])
                elif kind == "complete":
                    ended = True
                    return
        finally:
            self._ops.pop(op_id, None)
            if not ended:  # the caller left first: the server stops the operation
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"type": "complete", "id": op_id}))

    async def close(self) -> None:
        """Closes the connection (running subscriptions end with ``CONNECTION_CLOSED``)."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if reader is not None and reader.get_loop() is asyncio.get_running_loop():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _connection(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        if self._reader is not None and (self._reader.done() or self._reader.get_loop() is not loop):
            self._ws = self._reader = None  # lost, or opened in an event loop that is gone
        if self._lock is None or self._lock_loop is not loop:  # a lock serves one event loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self._ws is None:
                try:
                    ws = await ws_connect(self._url, subprotocols=[PROTOCOL], open_timeout=OPEN_TIMEOUT)  # type: ignore[list-item]
                except ConnectionClosed as exc:
                    raise closed_error(exc) from exc
                try:
                    await ws.send(json.dumps({"type": "connection_init", "payload": self._params()}))
                    await _wait_for_ack(ws)
                except ConnectionClosed as exc:
                    raise closed_error(exc) from exc
                except BaseException:
                    await ws.close()
                    raise
                self._ws = ws
                self.connects += 1
                self._reader = asyncio.create_task(self._read(ws), name="berth-sdk-websocket")
            return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        error: ConnectionClosed | None = None
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                    continue
                entry = self._ops.get(str(message.get("id")))
                if entry is not None and entry[0] is ws:
                    entry[1].put_nowait(message)
        except ConnectionClosed as exc:
            error = exc
        finally:
            if self._ws is ws:
                self._ws = None
            for owner, queue in list(self._ops.values()):
                if owner is ws:
                    queue.put_nowait(_Lost(error if error is not None else _closed_by_server(ws)))


def _closed_by_server(ws: ClientConnection) -> ConnectionClosed | None:
    """How ``ws`` closed when its iteration simply ended: None for a normal close, else its error."""
    if ws.close_code in (None, 1000):
        return None
    return ConnectionClosed(ws.close_rcvd, ws.close_sent)


async def _wait_for_ack(ws: ClientConnection) -> None:
    while True:
        message = json.loads(await ws.recv())
        if message.get("type") == "connection_ack":
            return
        if message.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong"}))


MESSAGE_TOO_BIG = 1009
"""The websocket close code of a message over the receiver's limit."""
STOPPING = (1001, 1012)
"""The websocket close codes of a server going away (uvicorn's as it stops) or restarting."""


def closed_error(exc: ConnectionClosed) -> BerthAPIError:
    """Returns the error of a closed websocket: the refusal the gateway named in its close reason
    (RATE_LIMITED, SUBSCRIPTION_LIMIT, UNAVAILABLE: a dependency away, to retry), UNAUTHENTICATED when it refused the credentials (close code
    4403: bad, or a keypair deactivated meanwhile), MESSAGE_TOO_BIG (1009), CONNECTION_CLOSED otherwise (saying so for
    a gateway stopping, 1001 or 1012, and for a connection lost without a close frame)."""
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    code = exc.rcvd.code if exc.rcvd is not None else None
    for refusal in ("RATE_LIMITED", "SUBSCRIPTION_LIMIT", "UNAVAILABLE"):
        if reason.startswith(f"{refusal}: "):
            return BerthAPIError(refusal, reason.removeprefix(f"{refusal}: "))
    if code == 4403 or reason.startswith("UNAUTHENTICATED"):
        return BerthAPIError("UNAUTHENTICATED", reason.removeprefix("UNAUTHENTICATED: ") or "connection refused")
    if code == MESSAGE_TOO_BIG:
        return BerthAPIError("MESSAGE_TOO_BIG", f"the gateway refused a message this large ({reason}); an execution "
                             f"takes at most {MAX_EXEC_INPUT >> 20} MiB of code and stdin together: larger data goes "
                             "through a folder (berth vfolder upload, then --mount)")
    if code in STOPPING:
        return BerthAPIError("CONNECTION_CLOSED", f"the gateway closed the connection as it stopped or restarted "
                             f"(websocket close {code}); what streamed on it ended there: try again once Berth answers")
    if code is None:
        return BerthAPIError("CONNECTION_CLOSED", "the connection to the gateway was lost without a word (the gateway "
                             "or the network went away); what streamed on it ended there: try again once Berth answers")
    return BerthAPIError("CONNECTION_CLOSED", f"websocket closed ({code}): {reason}")

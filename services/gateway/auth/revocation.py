"""Websockets closed within seconds of their keypair's deactivation.

A websocket is authenticated once, when it connects; a subscription may then run for hours.
``KeypairWatch`` (one per gateway) re-checks, every ``RECHECK`` seconds while any websocket is
open, which of their keypairs are still active, with one query over the ``keypairs`` table for all
of them (a deactivated keypair or user is marked there in the same transaction that records the
event). ``RevocableSocket`` wraps a websocket's ASGI ``receive`` and ``send``: when its keypair is
found inactive it closes the socket (code 4403, reason ``UNAUTHENTICATED: keypair deactivated``) and
tells the app that the client went away, so every subscription on it ends and gives back its slot.
A database that cannot be reached closes nothing: the check runs again at the next period.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.gateway.asgi import Message, Receive, Send

__all__ = ["CLOSE_CODE", "RECHECK", "KeypairWatch", "RevocableSocket"]

log = logging.getLogger(__name__)
RECHECK = 2.0
"""Seconds between two checks of the open websockets' keypairs."""
CLOSE_CODE = 4403
REASON = "UNAUTHENTICATED: keypair deactivated"


class KeypairWatch:
    """Which open websockets' keypairs are still active; ``watch`` one, ``forget`` it when it closes."""

    def __init__(self, pool: AsyncConnectionPool, *, recheck: float = RECHECK) -> None:
        self._pool = pool
        self._recheck = recheck
        self._watched: dict[asyncio.Event, str] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, access_key: str, revoked: asyncio.Event) -> None:
        """Sets ``revoked`` within ``recheck`` seconds once ``access_key`` is no longer active."""
        self._watched[revoked] = access_key
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="berth-keypair-watch")

    def forget(self, revoked: asyncio.Event) -> None:
        """Stops watching for ``revoked``."""
        self._watched.pop(revoked, None)

    async def close(self) -> None:
        """Stops checking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self._recheck)  # the period of the re-check, not a synchronisation
            keys = sorted(set(self._watched.values()))
            if not keys:
                continue
            try:
                active = await self._active(keys)
            except Exception as exc:  # noqa: BLE001 - the database is away: check again next period
                log.warning("keypair re-check failed (%s: %s); next in %.1f s", type(exc).__name__, exc, self._recheck)
                continue
            for revoked, key in list(self._watched.items()):
                if key not in active:
                    log.info("closing a websocket of deactivated keypair %s", key)
                    revoked.set()

    async def _active(self, keys: list[str]) -> set[str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT access_key FROM keypairs WHERE access_key = ANY(%s) AND is_active", (keys,))
            return {row[0] for row in await cur.fetchall()}


class RevocableSocket:
    """A websocket's ``receive`` and ``send`` that end the connection once its keypair is deactivated."""

    def __init__(self, receive: Receive, send: Send, watch: KeypairWatch) -> None:
        self._receive = receive
        self._send = send
        self._watch = watch
        self._revoked = asyncio.Event()
        self._pending: asyncio.Future[Message] | None = None
        self._closed = False

    def follow(self, access_key: str) -> None:
        """Closes this socket once ``access_key`` is deactivated (call it once authenticated)."""
        self._watch.watch(access_key, self._revoked)

    async def receive(self) -> Message:
        """The next message from the client, or a disconnect once the keypair is deactivated."""
        if self._closed:
            return {"type": "websocket.disconnect", "code": CLOSE_CODE}
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._receive())
        revoked = asyncio.ensure_future(self._revoked.wait())
        try:
            await asyncio.wait({self._pending, revoked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            revoked.cancel()
        if self._pending.done():
            message, self._pending = self._pending.result(), None
            return message
        self._closed = True
        await self._send({"type": "websocket.close", "code": CLOSE_CODE, "reason": REASON})
        return {"type": "websocket.disconnect", "code": CLOSE_CODE}

    async def send(self, message: Any) -> None:
        """Sends ``message`` unless the socket was closed here (the app's own close comes too late)."""
        if not self._closed:
            await self._send(message)

    def release(self) -> None:
        """Stops watching and reading (call it when the app is done with the socket)."""
        self._watch.forget(self._revoked)
        if self._pending is not None:
            self._pending.cancel()

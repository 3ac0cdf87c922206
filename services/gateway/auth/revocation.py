"""Websockets closed within seconds of their keypair's deactivation or their bearer token's expiry.

A websocket is authenticated once, when it connects; a subscription may then run for hours.
``KeypairWatch`` (one per gateway) re-checks, every ``RECHECK`` seconds while any websocket is
open, which of their keypairs are still active and which of their bearer tokens are still valid (those
authenticated with one: ``Principal.token_hash``), with one query for all of them over the ``keypairs``
table (a deactivated keypair or user is marked there in the same transaction that records the event) and
``auth_tokens`` (a token expires at its ``expires_at`` by PostgreSQL's clock, as for an HTTP request:
``tokens.TOKEN_LIVE``). ``RevocableSocket`` wraps a websocket's ASGI ``receive`` and ``send``: when its
keypair is found inactive, or its token expired, it closes the socket (code 4403, reason
``UNAUTHENTICATED: keypair deactivated`` or ``UNAUTHENTICATED: token expired``) and tells the app that the
client went away, so every subscription on it ends and gives back its slot. A database that cannot be
reached closes nothing: the check runs again at the next period.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.gateway.asgi import Message, Receive, Send
from services.gateway.auth.principal import Principal
from services.gateway.auth.tokens import TOKEN_LIVE

__all__ = ["CLOSE_CODE", "RECHECK", "KeypairWatch", "Revocation", "RevocableSocket"]

log = logging.getLogger(__name__)
RECHECK = 2.0
"""Seconds between two checks of the open websockets' keypairs and bearer tokens."""
CLOSE_CODE = 4403
DEACTIVATED = "keypair deactivated"
EXPIRED = "token expired"
_LIVE = ("SELECT 'keypair', access_key FROM keypairs WHERE access_key = ANY(%s) AND is_active"
         f" UNION ALL SELECT 'token', t.token_hash FROM auth_tokens t WHERE t.token_hash = ANY(%s) AND {TOKEN_LIVE}")


class Revocation:
    """Set once a websocket's credentials are no longer good, with the reason (the first one found)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def revoke(self, reason: str) -> None:
        """Ends the socket for ``reason`` (once: a later reason is not kept)."""
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


class KeypairWatch:
    """Which open websockets' credentials are still good; ``watch`` one, ``forget`` it when it closes."""

    def __init__(self, pool: AsyncConnectionPool, *, recheck: float = RECHECK) -> None:
        self._pool = pool
        self._recheck = recheck
        self._watched: dict[Revocation, Principal] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, principal: Principal, revocation: Revocation) -> None:
        """Revokes ``revocation`` within ``recheck`` seconds once the keypair of ``principal`` is no longer
        active, or the bearer token it was authenticated with (if any) is no longer valid."""
        self._watched[revocation] = principal
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="berth-keypair-watch")

    def forget(self, revocation: Revocation) -> None:
        """Stops watching for ``revocation``."""
        self._watched.pop(revocation, None)

    async def close(self) -> None:
        """Stops checking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self._recheck)  # the period of the re-check, not a synchronisation
            watched = list(self._watched.items())
            if not watched:
                continue
            try:
                live = await self._live([p.access_key for _, p in watched], [p.token_hash for _, p in watched])
            except Exception as exc:  # noqa: BLE001 - the database is away: check again next period
                log.warning("websocket re-check failed (%s: %s); next in %.1f s", type(exc).__name__, exc,
                            self._recheck)
                continue
            for revocation, principal in watched:
                reason = _revoked_for(principal, live)
                if reason is not None:
                    log.info("closing a websocket of keypair %s: %s", principal.access_key, reason)
                    revocation.revoke(reason)

    async def _live(self, keys: list[str], tokens: list[str | None]) -> set[tuple[str, str]]:
        """Returns ``("keypair", access key)`` for each active keypair and ``("token", hash)`` for each valid token."""
        hashes = sorted({token for token in tokens if token is not None})
        async with self._pool.connection() as conn:
            cur = await conn.execute(_LIVE, (sorted(set(keys)), hashes))
            return {(row[0], row[1]) for row in await cur.fetchall()}


def _revoked_for(principal: Principal, live: set[tuple[str, str]]) -> str | None:
    """Returns why a websocket of ``principal`` must end (None: it may go on), given what is ``live``."""
    if ("keypair", principal.access_key) not in live:
        return DEACTIVATED
    if principal.token_hash is not None and ("token", principal.token_hash) not in live:
        return EXPIRED
    return None


class RevocableSocket:
    """A websocket's ``receive`` and ``send`` that end the connection once its credentials are no longer good."""

    def __init__(self, receive: Receive, send: Send, watch: KeypairWatch) -> None:
        self._receive = receive
        self._send = send
        self._watch = watch
        self._revocation = Revocation()
        self._pending: asyncio.Future[Message] | None = None
        self._closed = False

    def follow(self, principal: Principal) -> None:
        """Closes this socket once the keypair of ``principal`` is deactivated or its bearer token expires (call it
        once authenticated)."""
        self._watch.watch(principal, self._revocation)

    async def receive(self) -> Message:
        """The next message from the client, or a disconnect once the credentials are no longer good."""
        if self._closed:
            return {"type": "websocket.disconnect", "code": CLOSE_CODE}
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._receive())
        revoked = asyncio.ensure_future(self._revocation.event.wait())
        try:
            await asyncio.wait({self._pending, revoked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            revoked.cancel()
        if self._pending.done():
            message, self._pending = self._pending.result(), None
            return message
        self._closed = True
        await self._send({"type": "websocket.close", "code": CLOSE_CODE,
                          "reason": f"UNAUTHENTICATED: {self._revocation.reason}"})
        return {"type": "websocket.disconnect", "code": CLOSE_CODE}

    async def send(self, message: Any) -> None:
        """Sends ``message`` unless the socket was closed here (the app's own close comes too late)."""
        if not self._closed:
            await self._send(message)

    def release(self) -> None:
        """Stops watching and reading (call it when the app is done with the socket)."""
        self._watch.forget(self._revocation)
        if self._pending is not None:
            self._pending.cancel()

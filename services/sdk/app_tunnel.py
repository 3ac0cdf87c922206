"""A connection to an app inside a session (Jupyter, a web server, anything on a TCP port of its main kernel),
over one websocket to the gateway's ``/apps/tunnel``: ``open_app_tunnel``, and ``forward_connection``
(a local TCP connection carried over one)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from services.sdk.client import BerthClient
from services.sdk.errors import BerthAPIError, raise_first

__all__ = ["TUNNEL_PATH", "forward_connection", "open_app_tunnel"]

TUNNEL_PATH = "/apps/tunnel"
CHUNK = 64 * 1024
OPEN_TIMEOUT = 30.0


def _refusal(exc: InvalidStatus) -> BerthAPIError:
    """The gateway's refusal of the handshake (its JSON error), as a ``BerthAPIError``."""
    try:
        raise_first(json.loads(exc.response.body or b"{}").get("errors") or [], f"HTTP_{exc.response.status_code}")
    except BerthAPIError as error:
        return error
    except (ValueError, AttributeError):
        pass
    return BerthAPIError(f"HTTP_{exc.response.status_code}", "the gateway refused the app tunnel")


async def open_app_tunnel(client: BerthClient, session: str, port: int) -> ClientConnection:
    """Opens a connection to ``port`` of the session's main kernel; raises ``BerthAPIError`` with the gateway's
    reason when it refuses (``NOT_FOUND``, ``CONFLICT`` when nothing listens there or the session does not run,
    ``SUBSCRIPTION_LIMIT`` ...)."""
    url = "ws" + client.base_url[len("http"):] + TUNNEL_PATH + "?" + urlencode({"session": session, "port": port})
    headers = client.signed_headers("GET", url, b"")
    try:
        return await ws_connect(url, additional_headers=headers, compression=None, max_size=2 * CHUNK,
                                open_timeout=OPEN_TIMEOUT)
    except InvalidStatus as exc:
        raise _refusal(exc) from None
    except InvalidHandshake as exc:  # the gateway dropped the connection mid-handshake (it was stopping, say)
        raise BerthAPIError("UNAVAILABLE", f"the gateway did not complete the app tunnel's handshake ({exc}): "
                                           "try again") from None


async def forward_connection(tunnel: ClientConnection, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
    """Carries a local connection's bytes over ``tunnel`` and back until either ends; then closes both."""

    async def outbound() -> None:
        try:
            while data := await reader.read(CHUNK):
                await tunnel.send(data)
        finally:
            await tunnel.close()  # the local side ended: the tunnel's messages end too

    sending = asyncio.ensure_future(outbound())
    try:
        async for message in tunnel:
            writer.write(message if isinstance(message, bytes) else message.encode())
            await writer.drain()
    except (ConnectionClosed, OSError):
        pass
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        with contextlib.suppress(ConnectionClosed, OSError):
            await tunnel.close()
        writer.close()

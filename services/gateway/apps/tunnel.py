"""``/apps/tunnel?session=REF&port=N``: one websocket carries one TCP connection to an app in a session.

The upgrade must be authenticated (signed, or a bearer token) and counts against the keypair's rate limit
(the auth layer in front of this) and holds one of its websocket slots while open. The session must be
the caller's (``NOT_FOUND`` else, as everywhere) and RUNNING. The gateway asks the main kernel's agent for
an offer over the bus (``contracts.app_tunnels``), connects to the agent's tunnel listener with its nonce,
and once the agent answered ``ok`` accepts the websocket: binary messages are the app's bytes, both
ways, until either side ends. A refusal is an HTTP response to the handshake: the status and the
GraphQL-shaped error (``{"errors": [{"message", "extensions": {"code"}}]}``) of any other request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TypeVar, cast
from urllib.parse import parse_qs

import msgspec
import nats.errors

from contracts.app_tunnels import (
    AGENT_ANSWER_WITHIN, MAX_ANSWER_LINE, TUNNEL_OK, AppTunnelOffer, AppTunnelRequest, app_subject, check_app_port,
    printable_reason,
)
from services.common.pumps import keep_alive, until_first_ends
from services.common.transient import unavailable_dependency, unavailable_message
from services.gateway.asgi import Receive, Scope, Send, deny_websocket, error_body
from services.gateway.auth.middleware import PRINCIPAL_KEY
from services.gateway.auth.principal import Principal
from services.gateway.context import GatewayContext, Info
from services.gateway.errors import (
    AMBIGUOUS, BAD_INPUT, CONFLICT, FORBIDDEN, NOT_FOUND, SUBSCRIPTION_LIMIT, UNAUTHENTICATED, UNAVAILABLE,
    GatewayError,
)
from services.gateway.resources import Resources
from services.gateway.sessions.main_kernel import running_main_kernel
from services.gateway.sessions.refs import checked_ref

__all__ = ["TUNNEL_PATH", "AppTunnelEndpoint"]

log = logging.getLogger(__name__)
T = TypeVar("T")

TUNNEL_PATH = "/apps/tunnel"
AGENT_TIMEOUT = 5.0
"""Seconds the agent has to answer the offer request, and to accept the connection to its listener."""
CHUNK = 64 * 1024
MAX_MESSAGE = 4 * CHUNK
"""Bytes of one websocket message to the app, at most (the SDK sends ``CHUNK``): a larger one closes the
tunnel (1009), so that a client whose app does not read holds little of the gateway's memory."""
_STATUS = {BAD_INPUT: 400, UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, CONFLICT: 409, AMBIGUOUS: 409,
           SUBSCRIPTION_LIMIT: 429, UNAVAILABLE: 503}
_CLOSE = {401: 4401, 403: 4403, 404: 4404, 409: 4409, 429: 4429, 503: 1013}


def _request_of(scope: Scope) -> tuple[str, int]:
    """The session reference and the port the query string names; BAD_INPUT else."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    sessions, ports = query.get("session", []), query.get("port", [])
    if len(sessions) != 1 or len(ports) != 1:
        raise GatewayError(BAD_INPUT, f"use {TUNNEL_PATH}?session=SESSION&port=PORT (one of each)")
    try:
        number = int(ports[0])
    except ValueError:
        raise GatewayError(BAD_INPUT, f"port must be an integer from 1 to 65535, not {ports[0]!r}") from None
    try:
        return checked_ref(sessions[0]), check_app_port(number)
    except ValueError as exc:
        raise GatewayError(BAD_INPUT, str(exc)) from None


class AppTunnelEndpoint:
    """The ASGI app of ``TUNNEL_PATH`` (behind the auth layer)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal | None = scope.get(PRINCIPAL_KEY)
        release: Callable[[], None] | None = None
        try:
            try:
                if principal is None:
                    raise GatewayError(UNAUTHENTICATED, "sign the websocket upgrade (Authorization header) or send a "
                                                        "bearer token: an app tunnel is authenticated before it opens")
                ref, port = _request_of(scope)
                release = await self._resources.take_socket_slot(principal)
                session_id, agent_id, tcp = await _unavailable_as_error(self._open(principal, ref, port))
            except GatewayError as exc:
                status = _STATUS.get(exc.code, 400)
                await deny_websocket(scope, receive, send, status, error_body(exc.code, str(exc)), {},
                                     _CLOSE.get(status, 1008), f"{exc.code}: {exc}")
                return
            log.info("app tunnel: %s to port %d of session %s (agent %s)", principal.access_key, port, session_id,
                     agent_id)
            try:
                await receive()  # websocket.connect
                await send({"type": "websocket.accept"})
                await _carry(receive, send, tcp[0], tcp[1])
            finally:
                tcp[1].close()
        finally:
            if release is not None:
                release()

    async def _open(self, principal: Principal, ref: str, port: int
                    ) -> tuple[str, str, tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """Returns the session's id, its main kernel's agent and the tunnel, once the agent said ``ok``."""
        context = GatewayContext(request=None, response=None, resources=self._resources, principal=principal)
        info = cast(Info, SimpleNamespace(context=context))
        state, kernel_id, agent_id = await running_main_kernel(info, ref)
        nc = await self._resources.nats()
        request = AppTunnelRequest(kernel_id=kernel_id, port=port)
        try:
            reply = await nc.request(app_subject(agent_id), msgspec.json.encode(request), timeout=AGENT_TIMEOUT)
            offer = msgspec.json.decode(reply.data, type=AppTunnelOffer)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            raise GatewayError(UNAVAILABLE, f"agent {agent_id} did not answer (if it is lost, the session's status "
                                            "detail says so and until when)") from None
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise GatewayError(UNAVAILABLE, f"agent {agent_id} answered something else than an offer") from None
        if not offer.ok:
            raise GatewayError(CONFLICT, printable_reason(offer.error or "the agent refused"))
        try:
            async with asyncio.timeout(AGENT_TIMEOUT):
                reader, writer = await asyncio.open_connection(offer.host, offer.port)
        except (OSError, asyncio.TimeoutError) as exc:  # where the agent listens is the operator's business
            log.warning("app tunnel: cannot reach agent %s's listener at %s:%d: %r", agent_id, offer.host, offer.port,
                        exc)
            raise GatewayError(UNAVAILABLE, f"cannot reach agent {agent_id}'s app tunnels: try again") from None
        keep_alive(writer)
        try:
            writer.write(offer.nonce.encode() + b"\n")
            async with asyncio.timeout(AGENT_ANSWER_WITHIN + AGENT_TIMEOUT):
                answer = await reader.readline()
        except (OSError, asyncio.TimeoutError, ValueError):
            answer = b""
        if answer != TUNNEL_OK:
            writer.close()
            if not answer.endswith(b"\n") or len(answer) > MAX_ANSWER_LINE:  # closed, silent, or not its answer
                raise GatewayError(UNAVAILABLE, f"agent {agent_id} did not take the connection to port {port} of "
                                                f"session {state.id}: try again")
            reason = printable_reason(answer.decode("utf-8", "replace"))
            raise GatewayError(CONFLICT, f"port {port} of session {state.id}: {reason}")
        return state.id, agent_id, (reader, writer)


async def _unavailable_as_error(opening: Awaitable[T]) -> T:
    """Awaits ``opening``; PostgreSQL or NATS away is UNAVAILABLE (the client may try again)."""
    try:
        return await opening
    except GatewayError:
        raise
    except Exception as exc:
        away = unavailable_dependency(exc)
        if away is None:
            raise
        raise GatewayError(UNAVAILABLE, unavailable_message(away, exc)) from None


async def _carry(receive: Receive, send: Send, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Carries the websocket's messages to the tunnel and the tunnel's bytes to the websocket, until
    either ends; then closes the websocket (it has no half-close; the caller closes the tunnel)."""
    closed = False

    async def inbound() -> None:
        nonlocal closed
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                closed = True
                return
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode()
            if len(data) > MAX_MESSAGE:
                closed = True
                await send({"type": "websocket.close", "code": 1009,
                            "reason": f"a message to an app holds at most {MAX_MESSAGE} bytes"})
                return
            writer.write(data)
            await writer.drain()

    async def outbound() -> None:
        while data := await reader.read(CHUNK):
            await send({"type": "websocket.send", "bytes": data})

    try:
        await until_first_ends(inbound(), outbound())
    finally:
        if not closed:
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1000})

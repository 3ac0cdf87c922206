"""The ASGI auth layer in front of the GraphQL app, and the ``POST /auth/token`` endpoint.

HTTP requests to ``/graphql`` must be signed or carry a bearer token, else they get
401 with a GraphQL-shaped JSON error; only the GraphiQL page (a GET without a
``query`` parameter) is served to anyone. A websocket upgrade that carries an
``Authorization`` header is checked here; one without is checked by the GraphQL view
on ``connection_init`` (see ``services.gateway.view``). The caller goes to the inner
app in ``scope["berth.principal"]``. Every authenticated request, and every websocket
connection, counts against its keypair's rate limit (``admit``): over it, HTTP 429 with
``Retry-After`` and code RATE_LIMITED (a signed websocket upgrade too; one refused at
``connection_init`` is closed, the reason starting ``RATE_LIMITED:``); each operation sent over a websocket
counts too (``services.gateway.ws_operations``). An authenticated
websocket is closed within seconds of its keypair's deactivation or its bearer token's expiry (``auth.revocation``).
A keypair has at most ``MAX_IN_FLIGHT`` HTTP requests past authentication at once; its others wait their turn
(``keyed_turns``), so that one keypair's burst cannot hold every connection of the gateway's pool. The GraphQL
layer's turns are ``Resources.requests_in_flight``, which its websockets' queries and mutations take too
(``ws_operations``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from psycopg_pool import AsyncConnectionPool

from services.gateway.asgi import (
    App, BodyTooLargeError, Receive, Scope, Send, deny_websocket, error_body, headers_of, read_body, replay, send_json,
    signed_path,
)
from services.gateway.auth.principal import AUTH_FAILED, AuthError, Principal
from services.gateway.auth.revocation import KeypairWatch, RevocableSocket
from services.gateway.auth.tokens import issue_token
from services.gateway.auth.verify import Authenticator
from services.common.transient import unavailable_dependency, unavailable_message
from services.gateway.errors import BAD_INPUT, RATE_LIMITED, UNAUTHENTICATED, UNAVAILABLE
from services.gateway.keyed_turns import KeyedTurns
from services.gateway.rate_limit import WINDOW, RateDecision

__all__ = ["MAX_BODY", "MAX_IN_FLIGHT", "PRINCIPAL_KEY", "WS_AUTH_KEY", "Admit", "AuthLayer", "TokenEndpoint",
           "rate_limited_reason", "unauthorized"]

log = logging.getLogger(__name__)
PRINCIPAL_KEY = "berth.principal"
WS_AUTH_KEY = "berth.ws_auth"
MAX_BODY = 1 << 20
MAX_IN_FLIGHT = 16
"""HTTP requests of one keypair served at once, at most. Before, 400 concurrent requests of one keypair (within its
rate limit, per 15 minutes) queued for the gateway's pool of 8 connections, and another keypair's request waited
10 s behind them and was answered 503. Twice the pool: a burst queues at most one pool's worth ahead of another
keypair's request, while a client's concurrent requests still run together (16 clients' ``createSession`` are
committed in one transaction: a bound of 4 would cut those batches to 4)."""
Admit = Callable[[Principal], Awaitable[RateDecision]]
"""Counts one request of a caller against its rate limit, as of its limits epoch (``Resources.admit``)."""


async def unauthorized(send: Send, reason: str) -> None:
    """Answers 401 with the reason as a GraphQL error (code UNAUTHENTICATED)."""
    await send_json(send, 401, error_body(UNAUTHENTICATED, reason), {"www-authenticate": "BackendAI, Bearer"})


def rate_limited_reason(decision: RateDecision) -> str:
    """Returns what a refused client is told: the limit and when to try again."""
    return (f"rate limit exceeded: your resource policy allows {decision.limit} requests per"
            f" {int(WINDOW) // 60} minutes; retry after {decision.retry_after} s")


def _too_many_headers(decision: RateDecision) -> dict[str, str]:
    """Returns ``Retry-After`` and Backend.AI's ``X-RateLimit-*`` headers of a refusal."""
    return {"retry-after": str(decision.retry_after), "x-ratelimit-limit": str(decision.limit),
            "x-ratelimit-remaining": "0", "x-ratelimit-window": str(int(WINDOW))}


async def unavailable(send: Send, away: str, error: BaseException) -> None:
    """Answers 503 ``UNAVAILABLE`` with ``Retry-After: 1``: a dependency is away (``error`` says how); the request
    changed nothing and may be sent again (``createSession`` with its idempotency key)."""
    await send_json(send, 503, error_body(UNAVAILABLE, unavailable_message(away, error)), {"retry-after": "1"})


async def _too_many(send: Send, decision: RateDecision) -> None:
    """Answers 429 with ``Retry-After`` and Backend.AI's ``X-RateLimit-*`` headers."""
    await send_json(send, 429, error_body(RATE_LIMITED, rate_limited_reason(decision)), _too_many_headers(decision))


async def _authenticate_http(
    authenticator: Authenticator, admit: Admit, scope: Scope, receive: Receive, send: Send, *, allow_bearer: bool
) -> tuple[Principal, bytes] | None:
    """Returns the caller and the body, or answers the error itself and returns None. What can be checked before
    the body is read is (``Authenticator.screen``): a request that cannot pass is refused without reading it."""
    headers = headers_of(scope)
    try:
        found = await authenticator.screen(headers=headers, allow_bearer=allow_bearer)
        try:
            body = await read_body(receive, MAX_BODY)
        except BodyTooLargeError as exc:
            await send_json(send, 413, error_body(BAD_INPUT, str(exc)))
            return None
        if not isinstance(found, Principal):  # a signed request: its signature covers the body
            found = await authenticator.verify(found, method=scope["method"], path=signed_path(scope),
                                               content_type=headers.get("content-type", ""), body=body)
        principal = found
        decision = await admit(principal)
    except AuthError as exc:
        log.info("refused %s %s: %s", scope["method"], scope.get("path"), exc)
        await unauthorized(send, AUTH_FAILED)
        return None
    except Exception as exc:
        away = unavailable_dependency(exc)
        if away is None:
            raise
        log.warning("cannot authenticate %s %s while %s is away: %s", scope["method"], scope.get("path"), away, exc)
        await unavailable(send, away, exc)
        return None
    if not decision.admitted:
        log.info("rate limited %s: %s %s", principal.access_key, scope["method"], scope.get("path"))
        await _too_many(send, decision)
        return None
    return principal, body


class AuthLayer:
    """Wraps the GraphQL app: authenticates each request and hands the caller on in the scope."""

    def __init__(self, app: App, authenticator: Authenticator, admit: Admit, watch: KeypairWatch,
                 in_flight: KeyedTurns | None = None) -> None:
        """``in_flight``: the keypairs' turns its HTTP requests take (default: turns of its own, ``MAX_IN_FLIGHT``
        each)."""
        self._app = app
        self._authenticator = authenticator
        self._admit = admit
        self._watch = watch
        self._in_flight = in_flight if in_flight is not None else KeyedTurns(MAX_IN_FLIGHT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and "query" not in parse_qs(scope.get("query_string", b"").decode("latin-1")):
            await self._app(scope, receive, send)  # the GraphiQL page; its queries need credentials
            return
        found = await _authenticate_http(self._authenticator, self._admit, scope, receive, send, allow_bearer=True)
        if found is not None:
            principal, body = found
            async with self._in_flight.turn(principal.access_key):
                await self._app({**scope, PRINCIPAL_KEY: principal}, replay(body, receive), send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        principal: Principal | None = None
        if headers.get("authorization"):
            try:
                principal = await self._authenticator.authenticate(
                    method="GET", path=signed_path(scope), headers=headers, body=b""
                )
            except AuthError as exc:  # refused as an HTTP request is (where the server can), so a client can tell
                log.info("refused websocket upgrade: %s", exc)
                await deny_websocket(scope, receive, send, 401, error_body(UNAUTHENTICATED, AUTH_FAILED),
                                     {"www-authenticate": "BackendAI, Bearer"}, 1008, AUTH_FAILED)
                return
            except Exception as exc:
                away = unavailable_dependency(exc)
                if away is None:
                    raise
                log.warning("cannot authenticate a websocket upgrade while %s is away: %s", away, exc)
                reason = unavailable_message(away, exc)
                await deny_websocket(scope, receive, send, 503, error_body(UNAVAILABLE, reason), {"retry-after": "1"},
                                     1013, f"{UNAVAILABLE}: {reason}")
                return
            decision = await self._admit(principal)
            if not decision.admitted:
                reason = rate_limited_reason(decision)
                await deny_websocket(scope, receive, send, 429, error_body(RATE_LIMITED, reason),
                                     _too_many_headers(decision), 4429, f"{RATE_LIMITED}: {reason}")
                return
        holder: dict[str, Any] = {"error": None, "on_close": []}  # on_close: what the view holds for the socket

        async def send_with_reason(message: dict[str, Any]) -> None:
            if message.get("type") == "websocket.close" and holder["error"]:
                message = {**message, "reason": holder["error"][:120]}
            await send(message)

        socket = RevocableSocket(receive, send_with_reason, self._watch)
        if principal is not None:
            socket.follow(principal)
        holder["follow"] = socket.follow  # the view follows a principal authenticated at connection_init
        try:
            await self._app({**scope, PRINCIPAL_KEY: principal, WS_AUTH_KEY: holder}, socket.receive, socket.send)
        finally:
            socket.release()
            for release in holder["on_close"]:
                release()


class TokenEndpoint:
    """``POST /auth/token``: a signed request gets a bearer token valid for 12 hours."""

    def __init__(self, authenticator: Authenticator, admit: Admit, pool: AsyncConnectionPool) -> None:
        self._authenticator = authenticator
        self._admit = admit
        self._pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_json(send, 405, error_body(BAD_INPUT, "use POST /auth/token with a signed request"))
            return
        found = await _authenticate_http(self._authenticator, self._admit, scope, receive, send, allow_bearer=False)
        if found is None:
            return
        principal = found[0]
        token, expires_at = await issue_token(self._pool, principal.access_key)
        await send_json(send, 200, {
            "token": token, "expires_at": expires_at.isoformat(), "access_key": principal.access_key,
            "role": principal.role.value, "domain": principal.domain,
        })

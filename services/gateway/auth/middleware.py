"""The ASGI auth layer in front of the GraphQL app, and the ``POST /auth/token`` endpoint.

HTTP requests to ``/graphql`` must be signed or carry a bearer token, else they get
401 with a GraphQL-shaped JSON error; only the GraphiQL page (a GET without a
``query`` parameter) is served to anyone. A websocket upgrade that carries an
``Authorization`` header is checked here; one without is checked by the GraphQL view
on ``connection_init`` (see ``services.gateway.view``). The caller goes to the inner
app in ``scope["berth.principal"]``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from psycopg_pool import AsyncConnectionPool

from services.gateway.asgi import (
    App, BodyTooLargeError, Receive, Scope, Send, error_body, headers_of, read_body, replay, send_json, signed_path,
)
from services.gateway.auth.principal import AUTH_FAILED, AuthError, Principal
from services.gateway.auth.tokens import issue_token
from services.gateway.auth.verify import Authenticator
from services.gateway.errors import BAD_INPUT, UNAUTHENTICATED

__all__ = ["MAX_BODY", "PRINCIPAL_KEY", "WS_AUTH_KEY", "AuthLayer", "TokenEndpoint", "unauthorized"]

log = logging.getLogger(__name__)
PRINCIPAL_KEY = "berth.principal"
WS_AUTH_KEY = "berth.ws_auth"
MAX_BODY = 1 << 20


async def unauthorized(send: Send, reason: str) -> None:
    """Answers 401 with the reason as a GraphQL error (code UNAUTHENTICATED)."""
    await send_json(send, 401, error_body(UNAUTHENTICATED, reason), {"www-authenticate": "BackendAI, Bearer"})


async def _authenticate_http(
    authenticator: Authenticator, scope: Scope, receive: Receive, send: Send, *, allow_bearer: bool
) -> tuple[Principal, bytes] | None:
    """Returns the caller and the body, or answers the error itself and returns None."""
    try:
        body = await read_body(receive, MAX_BODY)
    except BodyTooLargeError as exc:
        await send_json(send, 413, error_body(BAD_INPUT, str(exc)))
        return None
    try:
        principal = await authenticator.authenticate(
            method=scope["method"], path=signed_path(scope), headers=headers_of(scope), body=body,
            allow_bearer=allow_bearer,
        )
    except AuthError as exc:
        log.info("refused %s %s: %s", scope["method"], scope.get("path"), exc)
        await unauthorized(send, AUTH_FAILED)
        return None
    return principal, body


class AuthLayer:
    """Wraps the GraphQL app: authenticates each request and hands the caller on in the scope."""

    def __init__(self, app: App, authenticator: Authenticator) -> None:
        self._app = app
        self._authenticator = authenticator

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
        found = await _authenticate_http(self._authenticator, scope, receive, send, allow_bearer=True)
        if found is not None:
            principal, body = found
            await self._app({**scope, PRINCIPAL_KEY: principal}, replay(body, receive), send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        principal: Principal | None = None
        if headers.get("authorization"):
            try:
                principal = await self._authenticator.authenticate(
                    method="GET", path=signed_path(scope), headers=headers, body=b""
                )
            except AuthError as exc:
                log.info("refused websocket upgrade: %s", exc)
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008, "reason": AUTH_FAILED})
                return
        holder: dict[str, Any] = {"error": None}

        async def send_with_reason(message: dict[str, Any]) -> None:
            if message.get("type") == "websocket.close" and holder["error"]:
                message = {**message, "reason": holder["error"][:120]}
            await send(message)

        await self._app({**scope, PRINCIPAL_KEY: principal, WS_AUTH_KEY: holder}, receive, send_with_reason)


class TokenEndpoint:
    """``POST /auth/token``: a signed request gets a bearer token valid for 12 hours."""

    def __init__(self, authenticator: Authenticator, pool: AsyncConnectionPool) -> None:
        self._authenticator = authenticator
        self._pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_json(send, 405, error_body(BAD_INPUT, "use POST /auth/token with a signed request"))
            return
        found = await _authenticate_http(self._authenticator, scope, receive, send, allow_bearer=False)
        if found is None:
            return
        principal = found[0]
        token, expires_at = await issue_token(self._pool, principal.access_key)
        await send_json(send, 200, {
            "token": token, "expires_at": expires_at.isoformat(), "access_key": principal.access_key,
            "role": principal.role.value, "domain": principal.domain,
        })

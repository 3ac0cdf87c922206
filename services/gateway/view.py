"""The Strawberry ASGI view: builds the resolver context and authenticates websocket connections.

A websocket client that did not authenticate its upgrade request sends its
credentials in the ``connection_init`` payload: ``{"authorization": "Bearer <token>"}``
or the signed headers of ``GET /graphql`` with an empty body
(``authorization``, ``x-backendai-date`` and, if it signed one, ``content-type``).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from services.common.request_deadlines import HEADERS_WITHIN
from services.common.transient import unavailable_dependency, unavailable_message
from services.gateway.asgi import Receive, Scope, Send, error_body, headers_of, send_json
from services.gateway.auth.middleware import PRINCIPAL_KEY, WS_AUTH_KEY, rate_limited_reason
from services.gateway.auth.principal import AUTH_FAILED, AuthError
from services.gateway.context import GatewayContext
from services.gateway.errors import BAD_INPUT, RATE_LIMITED, UNAVAILABLE, GatewayError
from services.gateway.request_json import decode_json, refusal
from services.gateway.resources import Resources
from services.gateway.ws_operations import MAX_OPERATIONS, MeteredTransportWSHandler

__all__ = ["BerthGraphQL", "GRAPHQL_PATH"]

log = logging.getLogger(__name__)
GRAPHQL_PATH = "/graphql"
_SIGNED_PARAMS = ("authorization", "x-backendai-date", "content-type")
INIT_WITHIN = HEADERS_WITHIN
"""Seconds a websocket has to send its ``connection_init`` (strawberry's default, 60, held an unauthenticated
socket a minute: as long as anyone liked, by opening the next; an HTTP request's headers have as long)."""


class BerthGraphQL(GraphQL):
    """Strawberry's ASGI GraphQL with GraphiQL, graphql-transport-ws and Berth's context. Each operation sent over a
    websocket counts against the rate limit (``ws_operations``); the legacy ``graphql-ws`` protocol is not offered
    (its handler has neither that count nor the ``connection_init`` deadline)."""

    graphql_transport_ws_handler_class = MeteredTransportWSHandler

    def __init__(self, schema: BaseSchema, resources: Resources) -> None:
        super().__init__(schema, graphql_ide="graphiql", keep_alive=True, keep_alive_interval=15,
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
                         connection_init_wait_timeout=timedelta(seconds=INIT_WITHIN),
                         max_subscriptions_per_connection=MAX_OPERATIONS)
        self.resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's, except that a request it cannot take (a body that is not a JSON object, a
        missing query, an unsupported content type) is answered as every other refusal: a GraphQL
        error document with code BAD_INPUT, not plain text."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            await send_json(send, exc.status_code, error_body(BAD_INPUT, exc.reason))
            return
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """Returns the value of a request body or websocket message; one nested too deep, not Unicode or
        holding a lone surrogate is refused as not JSON (``request_json``: a websocket closes with 4400)."""
        return decode_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        """Returns a request body's JSON object; a body that is not JSON, or valid JSON but not an object (a
        string, a number, a list: batching is off), is refused (strawberry would fail on the latter: a 500)."""
        try:
            value = self.decode_json(data)
        except json.JSONDecodeError as exc:
            raise HTTPException(400, refusal(exc)) from None
        if not isinstance(value, dict):
            raise HTTPException(400, 'the request body must be a JSON object: {"query": ..., "variables": {...}}')
        return value

    async def get_context(self, request: Any, response: Any) -> GatewayContext:  # type: ignore[override]
        return GatewayContext(
            request=request, response=response, resources=self.resources, principal=request.scope.get(PRINCIPAL_KEY)
        )

    async def on_ws_connect(self, context: GatewayContext) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
        scope = context.request.scope
        try:
            if context.principal is None:
                await self._authenticate_init(context)
            await self._take_socket_slot(context)
        except AuthError as exc:
            log.info("refused websocket connection_init: %s", exc)
            raise _refused(scope, f"UNAUTHENTICATED: {AUTH_FAILED}", {"message": AUTH_FAILED}) from exc
        except ConnectionRejectionError:
            raise
        except Exception as exc:
            away = unavailable_dependency(exc)
            if away is None:
                raise
            log.warning("cannot authenticate a websocket connection_init while %s is away: %s", away, exc)
            message = unavailable_message(away, exc)
            raise _refused(scope, f"{UNAVAILABLE}: {message}", {"message": message, "code": UNAVAILABLE}) from exc
        return UNSET

    async def _authenticate_init(self, context: GatewayContext) -> None:
        """Authenticates the credentials of a ``connection_init`` and counts it against the rate limit."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        scope = context.request.scope
        headers = {name: str(params[name]) for name in _SIGNED_PARAMS if params.get(name) is not None}
        headers["host"] = headers_of(scope).get("host", "")
        context.principal = await self.resources.authenticator.authenticate(
            method="GET", path=GRAPHQL_PATH, headers=headers, body=b""
        )
        decision = await self.resources.admit(context.principal)
        if not decision.admitted:
            reason = rate_limited_reason(decision)
            raise _refused(scope, f"{RATE_LIMITED}: {reason}", {"message": reason, "code": RATE_LIMITED})
        holder = scope.get(WS_AUTH_KEY)
        if holder is not None and holder.get("follow") is not None:
            holder["follow"](context.principal)  # closed once its keypair is deactivated or its token expires

    async def _take_socket_slot(self, context: GatewayContext) -> None:
        """Holds one of the keypair's websocket slots while the connection lasts (the auth layer gives it back;
        ``Resources.take_socket_slot``)."""
        principal, scope = context.principal, context.request.scope
        holder = scope.get(WS_AUTH_KEY)
        if principal is None or holder is None:
            return
        try:
            release = await self.resources.take_socket_slot(principal)
        except GatewayError as exc:
            raise _refused(scope, f"{exc.code}: {exc.message}", {"message": exc.message, "code": exc.code}) from None
        holder["on_close"].append(release)


def _refused(scope: Scope, close_reason: str, payload: dict[str, object]) -> ConnectionRejectionError:
    """Returns the refusal of a websocket's connection_init; the socket then closes with ``close_reason``
    (the auth layer's holder carries it, ``services.gateway.auth.middleware``)."""
    holder = scope.get(WS_AUTH_KEY)
    if holder is not None:
        holder["error"] = close_reason
    return ConnectionRejectionError(payload)

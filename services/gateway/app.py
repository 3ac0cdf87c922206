"""The gateway's ASGI app: routes, lifespan, and the composition of auth layer and GraphQL view.

Routes: ``/graphql`` (GraphiQL page on a browser GET, queries and mutations over
POST, subscriptions over websocket), ``POST /auth/token``, ``/apps/tunnel`` (websocket: a connection to an app
in a session, ``services.gateway.apps``) and ``GET /healthz`` (503 naming
the event while the relay is stuck at one NATS refused: nothing after it reaches anyone;
``degraded`` with the outages the services are waiting out; 503 ``bus-closed`` once its NATS connection is closed
for good).
"""

from __future__ import annotations

import asyncio
import logging

from services.gateway.asgi import Receive, Scope, Send, error_body, send_json
from services.gateway.errors import NOT_FOUND, UNAVAILABLE
from services.gateway.apps.tunnel import TUNNEL_PATH, AppTunnelEndpoint
from services.gateway.auth.middleware import AuthLayer, TokenEndpoint
from services.gateway.health.doctor import relay_stuck
from services.gateway.health.outages import service_outages
from services.gateway.resources import Resources
from services.gateway.schema import build_schema
from services.gateway.view import GRAPHQL_PATH, BerthGraphQL

__all__ = ["GatewayApp", "TOKEN_PATH"]

log = logging.getLogger(__name__)
TOKEN_PATH = "/auth/token"
HEALTH_TIMEOUT = 2.0


class GatewayApp:
    """Routes requests; opens the resources at startup (or on the first request) and closes them."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self._graphql = AuthLayer(BerthGraphQL(build_schema(), resources), resources.authenticator, resources.admit,
                                  resources.keypair_watch, resources.requests_in_flight)
        self._token = TokenEndpoint(resources.authenticator, resources.admit, resources.pool)
        self._tunnel = AuthLayer(AppTunnelEndpoint(resources), resources.authenticator, resources.admit,
                                 resources.keypair_watch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        if path == "/healthz" and scope["type"] == "http":
            await self._health(send)
            return
        routes = {GRAPHQL_PATH: self._graphql, TOKEN_PATH: self._token, TUNNEL_PATH: self._tunnel}
        route = routes.get(path)
        if route is None or (path == TOKEN_PATH and scope["type"] != "http") or (
                path == TUNNEL_PATH and scope["type"] != "websocket"):
            await self._not_found(scope, receive, send)
            return
        try:
            await self.resources.start()
        except Exception:  # noqa: BLE001 - the database is down or unreachable: say so, keep serving
            log.exception("gateway resources unavailable")
            if scope["type"] == "http":
                await send_json(send, 503, error_body(UNAVAILABLE, "the gateway cannot reach its database"))
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1011})
            return
        await route(scope, receive, send)

    async def aclose(self) -> None:
        """Closes the pool, the event store and the NATS connection this app opened."""
        await self.resources.close()

    async def _health(self, send: Send) -> None:
        """Answers 200 ``{"status": "ok"}``, 200 ``{"status": "degraded", "outages": [...]}`` while a
        service waits out PostgreSQL, NATS or Docker (nothing is lost meanwhile), or 503
        ``{"status": "relay-stuck", "relay": ..., "outages": [...]}`` while the relay is stuck (a
        database the gateway cannot reach yet is not the relay's fault); 503 ``{"status": "bus-closed", ...}`` once
        its NATS connection is closed for good (``Resources.bus_closed``)."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                stuck = await relay_stuck(self.resources.pool)
        except Exception:  # noqa: BLE001 - pool not open yet, database unreachable: nothing to report here
            stuck = None
        if self.resources.bus_closed():  # it ends within a second (``main.run_gateway``): never healthy meanwhile
            closed = "gateway: its NATS connection is closed for good (nats-py reconnects no more): it ends to restart"
            await send_json(send, 503, {"status": "bus-closed", "outages": [closed]})
            return
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                outages = await service_outages(self.resources)
        except TimeoutError:
            outages = ["gateway: no answer from NATS within the health timeout"]
        if stuck is not None:
            await send_json(send, 503, {"status": "relay-stuck", "relay": stuck.describe(), "outages": outages})
        elif outages:
            await send_json(send, 200, {"status": "degraded", "outages": outages})
        else:
            await send_json(send, 200, {"status": "ok"})

    async def _not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send_json(send, 404, error_body(NOT_FOUND, f"no route {scope.get('path')}: use {GRAPHQL_PATH}"))
        else:
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.resources.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

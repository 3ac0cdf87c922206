"""Entry points: ``build_app`` (the ASGI app), ``run_gateway`` (uvicorn until ``stop``) and ``main``.

Run it alone with ``python -m services.gateway`` (settings from ``BERTH_*``); on the
first start against an empty database it prints the admin keypair once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import uvicorn
import uvloop
from nats.aio.client import Client as Nats

from contracts.execution import MAX_EXEC_INPUT
from services.common.bus_closed import watch_until
from services.common.entrypoint import run_until_signalled
from services.common.settings import Settings
from services.gateway.asgi import DeniedHandshakeFilter
from services.gateway.app import GatewayApp
from services.gateway.auth.keypairs import ensure_admin_keypair
from services.gateway.coalesced_writes import GatewayHttpProtocol
from services.gateway.execution import run_end
from services.gateway.resources import READ_WAIT, Resources
from services.gateway.view import GRAPHQL_PATH
from services.common.waiting import first_of

__all__ = ["bind_listener", "build_app", "main", "run_gateway"]

log = logging.getLogger(__name__)
_DENIED_HANDSHAKES = DeniedHandshakeFilter()
"""One filter object, so that a gateway started again in the same process adds it once (``addFilter``)."""

ENDING_WAIT = 5.0
"""Seconds a stopping gateway waits for the interrupts of runs whose clients went (``run_end``)."""
WS_MAX_MESSAGE = 2 * MAX_EXEC_INPUT + (64 << 10)
"""Bytes of one websocket message: an ``execute`` of the largest code and stdin it takes, JSON-escaped (a
newline or a quote is two bytes), with room for the query. Past it the socket closes with 1009, which the
SDK names (``MESSAGE_TOO_BIG``); within it, a larger input gets ``execute``'s own BAD_INPUT."""


def build_app(settings: Settings, *, nats: Nats | None = None, read_wait: float = READ_WAIT) -> GatewayApp:
    """Returns the gateway's ASGI app; it opens its connections on startup or on the first request.

    ``nats`` is a connected client to use for subscriptions (else one is opened to
    ``settings.nats_url`` on first use); ``read_wait`` bounds the wait for ``afterPosition``.
    Close it with ``await app.aclose()`` (ASGI lifespan shutdown does it too).
    """
    return GatewayApp(Resources(settings, nats=nats, read_wait=read_wait))


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (the caller owns shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_listener(host: str, port: int) -> socket.socket:
    """Returns a socket bound to ``host:port`` as the gateway listens (``SO_REUSEADDR``: a port with connections in
    TIME_WAIT is free); OSError when it cannot be bound (``berth up`` tries it before it starts anything)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, a subscription's second small message waits
    # for the client's delayed ACK (Nagle), adding ~40 ms to every streamed execution.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def run_gateway(
    settings: Settings, stop: asyncio.Event, ready: Callable[[str], None] | None = None, *, nats: Nats | None = None,
    read_wait: float = READ_WAIT,
) -> None:
    """Serves the gateway on ``settings.gateway_host:gateway_port`` (0: a free port) until ``stop`` is set.

    Calls ``ready(url)`` with the base URL (``http://host:port``; GraphQL at ``url + "/graphql"``) once
    it accepts connections; ``read_wait`` bounds the wait for ``afterPosition`` (as ``build_app``'s).
    It does not create the admin keypair: the caller does
    (``ensure_admin_keypair``), so that it can print the new one once. Raises ``bus_closed.BusClosedError`` once
    one of its NATS connections (requests and subscriptions; runs' output) is closed for good
    (``Resources.bus_closed``): what it carries could never succeed again, so it ends, and its supervisor starts it
    again.
    """
    app = build_app(settings, nats=nats, read_wait=read_wait)
    sock: socket.socket | None = None
    server: _Server | None = None
    serving: asyncio.Task[None] | None = None
    watching: asyncio.Task[None] | None = None
    try:
        await app.resources.start()
        sock = bind_listener(settings.gateway_host, settings.gateway_port)
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, ws="websockets-sansio",
            http=GatewayHttpProtocol,  # one send per response; a request arrives within its deadlines
            timeout_graceful_shutdown=5, ws_max_size=WS_MAX_MESSAGE,
        )
        logging.getLogger("uvicorn.error").addFilter(_DENIED_HANDSHAKES)
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                await serving
                raise RuntimeError("the gateway server stopped during startup")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("gateway serving GraphQL at %s%s", url, GRAPHQL_PATH)
        if ready is not None:
            ready(url)
        watching = asyncio.create_task(watch_until(stop, app.resources.bus_closed, "gateway"))
        await first_of(serving, stop, watching)
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        if server is not None and serving is not None:
            server.should_exit = True
            await asyncio.wait({serving}, timeout=15)
            if not serving.done():
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
        if sock is not None:
            sock.close()
        await run_end.settle(ENDING_WAIT)
        await app.aclose()
    assert serving is not None and watching is not None
    if not serving.cancelled():
        serving.result()  # re-raises what stopped the server, if anything did
    if watching.done() and not watching.cancelled():
        watching.result()  # BusClosedError: its NATS connection closed for good, the process ends to start again


def main() -> None:
    """Runs the gateway from ``BERTH_*`` settings until SIGINT or SIGTERM."""

    async def serve(settings: Settings, stop: asyncio.Event) -> None:
        created = await asyncio.to_thread(ensure_admin_keypair, settings.pg_dsn)
        if created is not None:
            print(f"admin keypair created (shown once): access key {created[0]}  secret key {created[1]}", flush=True)
        await run_gateway(settings, stop, lambda url: print(f"Berth GraphQL: {url}{GRAPHQL_PATH}", flush=True))

    run_until_signalled("gateway", serve, loop_factory=uvloop.new_event_loop)

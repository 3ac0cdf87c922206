"""Serves the data plane with uvicorn on a socket bound beforehand (so port 0 picks a free one
and the URL is known before the first request): httptools parses HTTP, and the process runs on
uvloop (``new_event_loop``; uvicorn's own choice applies only when uvicorn makes the loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
import uvloop
from starlette.applications import Starlette

from services.common.request_deadlines import DeadlineHttpToolsProtocol

__all__ = ["bind", "new_event_loop", "parse_bind", "serving"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop the storage service runs on (uvloop: its sockets cost less per byte)."""
    return uvloop.new_event_loop()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (the caller owns shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_bind(value: str) -> tuple[str, int]:
    """Returns (host, port) of ``BERTH_STORAGE_BIND`` (``host:port``; port 0 = a free one)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"BERTH_STORAGE_BIND must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def bind(host: str, port: int) -> socket.socket:
    """Returns a listening TCP socket on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(app: Starlette, sock: socket.socket) -> AsyncIterator[str]:
    """Serves ``app`` on ``sock`` while the block runs; yields the base URL."""
    config = uvicorn.Config(app, http=DeadlineHttpToolsProtocol, log_level=logging.WARNING, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5)  # a request's headers within their deadline
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=15)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""Connections from the gateway to apps inside this agent's kernels (DESIGN.md §12).

``app.agent.<id>``: an ``AppTunnelRequest`` (kernel, port) is answered with an ``AppTunnelOffer``: this
agent's tunnel listener and a one-time nonce valid ``OFFER_TTL`` seconds. A connection to the listener
sends the nonce and a newline within ``HELLO_WITHIN`` (the gateway sends it at once); the agent then asks
the kernel's runner to connect to the port on the kernel's own loopback (``{"op":"connect"}`` on the runner's
Unix socket), answers ``ok`` (or why not, one line, and closes) and carries bytes both ways until either side
ends.

Bounds: at most ``MAX_PER_KERNEL`` tunnels (open or offered) per kernel, ``MAX_OFFERS`` offers
outstanding and ``MAX_GREETING`` connections that have not sent their nonce yet (one more closes the
oldest of them: connections that send nothing cannot keep the gateway's out); a tunnel's connection to the
runner buffers at most ``2 * CHUNK`` (asyncio stops reading there: an app that writes faster than its client
reads is held back in the kernel, not in the agent's memory); TCP keepalive ends a tunnel whose gateway went
away silently. When bytes last moved through a kernel's tunnels goes into the heartbeat (``traffic``): the
controller's idle timeout counts it as the session's activity, as Backend.AI's counts app traffic; a tunnel open
but silent is not activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.app_tunnels import (
    MAX_NONCE_LINE, OFFER_TTL, RUNNER_ANSWER_WITHIN, TUNNEL_OK, AppTunnelOffer, AppTunnelRequest, app_subject,
    check_app_port, printable_reason,
)
from services.agent.backends.base import KernelBackend
from services.agent.runner_socket import open_runner
from services.common.pumps import keep_alive, until_first_ends

__all__ = ["AppTunnels", "HELLO_WITHIN", "MAX_PER_KERNEL", "splice"]

log = logging.getLogger(__name__)

HELLO_WITHIN = 5.0
"""Seconds a connection to the listener has to send its nonce."""
MAX_PER_KERNEL = 256
MAX_OFFERS = 1024
MAX_GREETING = 64
CHUNK = 64 * 1024
_WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class _Offer:
    kernel_id: str
    port: int
    expires: float


def _reason(exc: BaseException) -> str:
    """What went wrong, for the user: an OS error's text without the paths it names (the agent's own)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "timed out" if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else type(exc).__name__


def _line(text: str) -> bytes:
    """One line of at most 500 printable characters (what a kernel's runner said may be anything)."""
    return (printable_reason(text) + "\n").encode()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, moved: Callable[[], None]) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            moved()
            writer.write(data)
            await writer.drain()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def splice(a: Connection, b: Connection, moved: Callable[[], None] = lambda: None) -> None:
    """Carries bytes between two connections until either ends (a tunnel has no half-close: the other
    direction is cut), then closes both; calls ``moved`` before each chunk carried."""
    try:
        await until_first_ends(_pump(a[0], b[1], moved), _pump(b[0], a[1], moved))
    finally:
        for _, writer in (a, b):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class AppTunnels:
    """Answers ``app.agent.<id>`` and serves the tunnel listener for the kernels of ``backend``."""

    def __init__(self, nc: Nats, agent_id: str, backend: KernelBackend, host: str = "127.0.0.1", port: int = 0) -> None:
        self._nc = nc
        self._agent_id = agent_id
        self._backend = backend
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._sub: Subscription | None = None
        self._offers: dict[str, _Offer] = {}
        self._open: Counter[str] = Counter()
        self._traffic: dict[str, float] = {}
        self._greeting: dict[asyncio.StreamWriter, None] = {}  # oldest first
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The host the gateway is told to connect to, and the listener's port."""
        assert self._server is not None, "start() first"
        port = self._server.sockets[0].getsockname()[1]
        return (socket.gethostname() if self._host in _WILDCARDS else self._host), port

    async def start(self) -> None:
        """Listens, then subscribes to the agent's app subject."""
        self._server = await asyncio.start_server(self._on_connection, self._host or None, self._port)
        self._sub = await self._nc.subscribe(app_subject(self._agent_id), cb=self._on_request)
        log.info("app tunnels of agent %s listen on %s:%d", self._agent_id, *self.address)

    def traffic(self) -> dict[str, float]:
        """Returns, per kernel of this agent, when (wall clock) bytes last moved through its tunnels; kernels
        that are gone are forgotten."""
        for kernel_id in [k for k in self._traffic if self._open[k] <= 0 and not self._runs(k)]:
            del self._traffic[kernel_id]
        return dict(self._traffic)

    def _runs(self, kernel_id: str) -> bool:
        path = self._backend.runner_socket(kernel_id)
        return path is not None and path.exists()

    async def stop(self) -> None:
        """Unsubscribes, stops listening and cuts the tunnels."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_request(self, msg: Msg) -> None:
        offer = self._offer(msg.data)
        if msg.reply:
            await self._nc.publish(msg.reply, msgspec.json.encode(offer))

    def _offer(self, data: bytes) -> AppTunnelOffer:
        try:
            request = msgspec.json.decode(data, type=AppTunnelRequest)
            check_app_port(request.port)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            return AppTunnelOffer(ok=False, error=f"bad app tunnel request: {exc}")
        if not self._runs(request.kernel_id):
            return AppTunnelOffer(ok=False, error=f"kernel {request.kernel_id} does not run on agent {self._agent_id}")
        now = time.monotonic()
        for nonce in [nonce for nonce, offer in self._offers.items() if offer.expires <= now]:
            del self._offers[nonce]
        offered = sum(1 for offer in self._offers.values() if offer.kernel_id == request.kernel_id)
        if self._open[request.kernel_id] + offered >= MAX_PER_KERNEL or len(self._offers) >= MAX_OFFERS:
            return AppTunnelOffer(ok=False, error=f"kernel {request.kernel_id} has {MAX_PER_KERNEL} connections to its "
                                                  "apps already: close some first")
        nonce = secrets.token_urlsafe(32)
        self._offers[nonce] = _Offer(request.kernel_id, request.port, now + OFFER_TTL)
        host, port = self.address
        return AppTunnelOffer(ok=True, host=host, port=port, nonce=nonce)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            offer = await self._greeted(reader, writer)
            if offer is not None:
                keep_alive(writer)
                self._open[offer.kernel_id] += 1
                try:
                    await self._tunnel(offer, reader, writer)
                finally:
                    self._open[offer.kernel_id] -= 1
                    if self._open[offer.kernel_id] <= 0:
                        del self._open[offer.kernel_id]
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _greeted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Offer | None:
        """Returns the offer whose nonce the connection sent in time, once; None (connection answered) else."""
        if len(self._greeting) >= MAX_GREETING:
            oldest = next(iter(self._greeting))
            del self._greeting[oldest]
            log.debug("closed a tunnel connection that sent no nonce yet: %d newer ones wait", MAX_GREETING)
            oldest.close()  # its read ends (connection lost), its task closes it
        self._greeting[writer] = None
        try:
            async with asyncio.timeout(HELLO_WITHIN):
                line = await reader.readuntil(b"\n")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        finally:
            self._greeting.pop(writer, None)
        offer = self._offers.pop(line[:-1].decode("ascii", "replace"), None) if len(line) <= MAX_NONCE_LINE else None
        if offer is None or offer.expires <= time.monotonic():
            peer = writer.get_extra_info("peername")
            log.debug("refused a tunnel connection from %s: no such offer (or used, or expired)", peer)
            writer.write(b"refused: no such offer\n")
            return None
        return offer

    async def _tunnel(self, offer: _Offer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = self._backend.runner_socket(offer.kernel_id)
        try:
            if path is None:
                raise FileNotFoundError(errno.ENOENT, "the kernel is gone")
            runner = await open_runner(path, limit=CHUNK)
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("app tunnel to kernel %s: cannot reach its runner at %s: %r", offer.kernel_id, path, exc)
            writer.write(_line(f"cannot reach the runner of kernel {offer.kernel_id}: {_reason(exc)}"))
            return
        spliced = False
        try:
            answer = await self._connected(runner, offer)
            if answer is not None:
                writer.write(_line(answer))
                return
            writer.write(TUNNEL_OK)

            def moved() -> None:
                self._traffic[offer.kernel_id] = time.time()

            spliced = True
            await splice((reader, writer), runner, moved)
        finally:
            if not spliced:
                runner[1].close()

    @staticmethod
    async def _connected(runner: Connection, offer: _Offer) -> str | None:
        """Asks the runner to connect to the offer's port; None when it did, else why not (the runner, in
        the kernel, may answer anything: a line of at most ``CHUNK`` bytes is read, anything else refused)."""
        try:
            runner[1].write((json.dumps({"op": "connect", "port": offer.port}) + "\n").encode())
            async with asyncio.timeout(RUNNER_ANSWER_WITHIN):
                line = await runner[0].readline()
            answer = json.loads(line or b"{}")
        except (OSError, asyncio.TimeoutError) as exc:
            return f"the runner of kernel {offer.kernel_id} did not answer: {_reason(exc)}"
        except (ValueError, RecursionError):  # not one line of JSON (too long, too deep, not JSON)
            return f"the runner of kernel {offer.kernel_id} answered something else than a line of JSON"
        if isinstance(answer, dict) and answer.get("op") == "connected":
            return None
        message = answer.get("message") if isinstance(answer, dict) else None
        return str(message or "the runner refused the connection")

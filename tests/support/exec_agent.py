"""An agent's exec server of its own for a test, on the real NATS, with kernel runners the test scripts.

``serving(nats_url, backend)`` starts an ``ExecServer`` under a fresh agent id and yields it with a gateway-side
connection (``Served``); ``FakeRunner`` is a runner's Unix socket whose answers a test chooses (a runner a
kernel replaced: mute, silent, flooding, saying anything); ``ScriptedBackend`` gives each kernel id a socket
under one directory and a log the test controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats.errors
from nats.aio.client import Client as Nats
from nats.aio.subscription import Subscription

from contracts.execution import (
    ExecAccepted,
    ExecChunk,
    ExecDone,
    ExecOutput,
    ExecRequest,
    LogsRequest,
    exec_subject,
    io_subject,
    logs_subject,
)
from services.agent.exec_server import ExecServer
from services.common.bus import connect
from tests.support.waiting import async_wait_for

__all__ = ["RUNNER", "FakeRunner", "MuteRunner", "Output", "Pending", "ScriptedBackend", "Served", "real_runner", "run",
           "serving", "silent"]

RUNNER = Path(__file__).resolve().parents[2] / "services" / "agent" / "runner" / "berth_runner.py"
"""The real kernel runner."""

Behaviour = Callable[[dict, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ScriptedBackend:
    """A backend whose kernels' runner sockets are ``<root>/<kernel_id>.sock``; ``logs`` returns ``log_text`` or,
    for a kernel in ``stuck_logs``, waits until that event is set."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_text = "a log\n"
        self.stuck_logs: dict[str, asyncio.Event] = {}
        self.log_calls: list[tuple[str, int | None, int]] = []

    def runner_socket(self, kernel_id: str) -> Path:
        return self.root / f"{kernel_id}.sock"

    async def logs(self, kernel_id: str, tail: int | None = None, limit: int = 1 << 20) -> str:
        self.log_calls.append((kernel_id, tail, limit))
        if kernel_id in self.stuck_logs:
            await self.stuck_logs[kernel_id].wait()
        return self.log_text


async def silent(request: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Takes the run and sends nothing (the connection is held until the agent closes it)."""


class MuteRunner:
    """A runner's socket at ``path`` that never accepts a connection (a SIGSTOPped runner): a client connects
    (into the listen backlog) and writes until the socket's buffers are full, then waits for good."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(64)

    async def read_pending(self, count: int, timeout: float = 20) -> list[int]:
        """Accepts ``count`` pending connections and reads each to its end; returns how many bytes each held
        (TimeoutError when one is not closed by its client within ``timeout``)."""
        loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        sizes = []
        async with asyncio.timeout(timeout):
            for _ in range(count):
                conn, _ = await loop.sock_accept(self._sock)
                with conn:
                    size = 0
                    while chunk := await loop.sock_recv(conn, 1 << 16):
                        size += len(chunk)
                    sizes.append(size)
        return sizes

    def close(self) -> None:
        self._sock.close()


@dataclass
class FakeRunner:
    """A runner's socket at ``path``: each ``run`` is handed to ``behaviour`` once its line was read, then the
    connection is held until the agent closes it (``ended`` counts those); an ``interrupt``, on a connection of its
    own or on its run's after the run, is answered ``ok`` and changes nothing (a runner whose run ignores it)."""

    path: Path
    behaviour: Behaviour = silent
    requests: list[dict] = field(default_factory=list)
    ended: int = 0
    _server: asyncio.AbstractServer | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> FakeRunner:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=4 << 20)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request: dict = {}
        self._writers.add(writer)
        try:
            request = json.loads(await reader.readline())
            self.requests.append(request)
            if request.get("op") == "interrupt":
                await self._answer(request, writer)
                return
            await self.behaviour(request, reader, writer)
            while line := await reader.readline():  # the run's interrupts, until the agent closes
                interrupt = json.loads(line)
                self.requests.append(interrupt)
                await self._answer(interrupt, writer)
        except (OSError, ValueError):
            pass
        finally:
            if request.get("op") == "run":
                self.ended += 1
            self._writers.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _answer(interrupt: dict, writer: asyncio.StreamWriter) -> None:
        answer = {"op": "interrupted", "run_id": interrupt["run_id"], "ok": True}
        writer.write((json.dumps(answer) + "\n").encode())
        await writer.drain()

    def stop_listening(self) -> None:
        """Takes no new connection (its socket's path is free again); those it has go on."""
        if self._server is not None:
            self._server.close()
        self.path.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()


class Output:
    """The items of one run's stream, as a gateway subscribed to it receives them."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.items: list[ExecChunk | ExecDone] = []
        self.data_chars = 0

    async def next(self, timeout: float = 20) -> ExecChunk | ExecDone:
        item = msgspec.json.decode((await self.sub.next_msg(timeout=timeout)).data, type=ExecOutput)
        self.items.append(item)
        if isinstance(item, ExecChunk):
            self.data_chars += len(item.data)
        return item

    async def until_done(self, timeout: float = 20) -> ExecDone:
        while not isinstance(item := await self.next(timeout), ExecDone):
            pass
        return item

    def text(self, stream: str = "stderr") -> str:
        return "".join(i.data for i in self.items if isinstance(i, ExecChunk) and i.stream == stream)


@dataclass
class Pending:
    """A request sent, whose answer may come later."""

    sub: Subscription

    def answered(self) -> bool:
        return self.sub.pending_msgs > 0

    async def answer(self, timeout: float = 20) -> ExecAccepted:
        return msgspec.json.decode(await self.raw(timeout), type=ExecAccepted)

    async def raw(self, timeout: float = 20) -> bytes:
        return (await self.sub.next_msg(timeout=timeout)).data


@dataclass
class Served:
    """An exec server (``server``) answering as ``agent_id``, and ``nc``, a gateway's connection to it."""

    server: ExecServer
    nc: Nats
    agent_id: str

    async def ask(self, request: ExecRequest, timeout: float = 20) -> ExecAccepted:
        reply = await self.nc.request(exec_subject(self.agent_id), msgspec.json.encode(request), timeout=timeout)
        return msgspec.json.decode(reply.data, type=ExecAccepted)

    async def send(self, request: ExecRequest | LogsRequest) -> Pending:
        """Sends ``request`` and returns once the server has it, ahead of any request sent after; its answer is
        the returned ``Pending``'s."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        subject = logs_subject(self.agent_id) if isinstance(request, LogsRequest) else exec_subject(self.agent_id)
        await self.nc.publish(subject, msgspec.json.encode(request), reply=inbox)
        await self.nc.flush()
        return Pending(sub)

    async def output(self, kernel_id: str, run_id: str) -> Output:
        return Output(await self.nc.subscribe(io_subject(self.agent_id, kernel_id, run_id)))

    async def logs(self, kernel_id: str, tail: int | None = None, timeout: float = 20) -> str:
        data = msgspec.json.encode(LogsRequest(kernel_id=kernel_id, tail=tail))
        return (await self.nc.request(logs_subject(self.agent_id), data, timeout=timeout)).data.decode()


@contextlib.contextmanager
def real_runner(backend: ScriptedBackend, kernel_id: str) -> Iterator[subprocess.Popen]:
    """Runs the real kernel runner on ``kernel_id``'s socket for the block; kills it at the end."""
    path = backend.runner_socket(kernel_id)
    proc = subprocess.Popen([sys.executable, str(RUNNER), "--socket", str(path)], stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run(kernel_id: str, code: str = "x", run_id: str | None = None) -> ExecRequest:
    """Returns a request to run ``code`` in ``kernel_id`` (a fresh run id unless given)."""
    return ExecRequest(run_id=run_id or uuid.uuid4().hex, kernel_id=kernel_id, code=code)


@contextlib.asynccontextmanager
async def serving(nats_url: str, backend: object) -> AsyncIterator[Served]:
    """Yields an exec server of ``backend`` under a fresh agent id, and a gateway's connection; stops both after."""
    agent_id = f"a{uuid.uuid4().hex[:10]}"
    agent_nc = await connect(nats_url, "test-agent")
    gateway_nc = await connect(nats_url, "test-gateway")
    server = ExecServer(agent_nc, agent_id, backend)  # type: ignore[arg-type]
    await server.start()
    for subject in (exec_subject(agent_id), logs_subject(agent_id)):
        await async_wait_for(lambda: _answered(gateway_nc, subject), timeout=10,
                             message=f"{subject} got no responder")
    try:
        yield Served(server, gateway_nc, agent_id)
    finally:
        await server.stop()
        await gateway_nc.close()
        await agent_nc.close()


async def _answered(nc: Nats, subject: str) -> bool:
    """Whether a request on ``subject`` (a malformed one: the server only says so) finds a responder from ``nc``:
    a subscription of another connection is seen by the server's routing a moment after its flush, at times."""
    try:
        await nc.request(subject, b"{", timeout=10)
    except nats.errors.NoRespondersError:
        return False
    return True

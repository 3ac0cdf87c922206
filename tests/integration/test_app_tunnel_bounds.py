"""The app tunnels' bounds against what may be hostile (DESIGN.md §12): a kernel's runner that answers anything or an
app that writes faster than its client reads (the agent's side), connections to the agent's listener that send
nothing, and a client that sends huge messages or a bad signature (the gateway's side). Real NATS, PostgreSQL and
HTTP; the "runner" of the agent's side is a Unix socket server of the test, as a kernel's code could make it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from contracts.app_tunnels import TUNNEL_OK, AppTunnelOffer, AppTunnelRequest, app_subject
from services.agent import app_tunnels
from services.agent.app_tunnels import MAX_GREETING, AppTunnels
from services.application.sessions import Sessions
from services.common.bus import connect
from services.gateway.apps.tunnel import MAX_MESSAGE
from services.sdk.app_tunnel import open_app_tunnel
from services.sdk.client import BerthAPIError, BerthClient
from tests.integration.test_app_tunnels import _echoed, _offer, app_port  # noqa: F401
from tests.integration.test_exec import backend, cluster, running_session, sessions  # noqa: F401
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for

Runner = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _OneKernel:
    """The agent's backend as its app tunnels see it: one kernel, whose runner's socket is ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def runner_socket(self, kernel_id: str) -> Path | None:
        return self.path if kernel_id == "k1" else None


@pytest.fixture
async def agent_with(nats_url: str, tmp_path: Path) -> AsyncIterator[Callable[[Runner], Awaitable[AppTunnelOffer]]]:
    """Starts an agent's app tunnels (a fresh agent id, on the real bus) whose kernel ``k1`` has the given runner;
    returns an offer for its port 80, asked as the gateway asks."""
    nc = await connect(nats_url, "test")
    agent_id = f"t{uuid.uuid4().hex[:12]}"
    started: list[AppTunnels] = []
    servers: list[asyncio.Server] = []

    async def start(runner: Runner) -> AppTunnelOffer:
        path = tmp_path / "runner.sock"
        (tmp_path / "runner.sock").touch()
        path.unlink()
        servers.append(await asyncio.start_unix_server(runner, str(path)))
        tunnels = AppTunnels(nc, agent_id, _OneKernel(path))
        await tunnels.start()
        started.append(tunnels)
        request = msgspec.json.encode(AppTunnelRequest(kernel_id="k1", port=80))
        return msgspec.json.decode((await nc.request(app_subject(agent_id), request, timeout=10)).data,
                                   type=AppTunnelOffer)

    yield start
    for tunnels in started:
        await tunnels.stop()
    for server in servers:
        server.close()
    await nc.close()


async def _greet(offer: AppTunnelOffer, rcvbuf: int | None = None) -> tuple[bytes, asyncio.StreamReader,
                                                                             asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting: the window the agent may fill stays this small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (offer.host, offer.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(offer.nonce.encode() + b"\n")
    async with asyncio.timeout(30):
        return await reader.readline(), reader, writer


async def test_a_runner_that_answers_anything_is_told_in_one_line_and_its_connection_closed(agent_with) -> None:
    ended = asyncio.Event()

    async def deep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"[" * 60_000 + b"\n")  # JSON too deep to decode, within the line's bound
        await reader.read()  # until the agent closes
        ended.set()

    answer, _, writer = await _greet(await agent_with(deep))
    assert answer == b"the runner of kernel k1 answered something else than a line of JSON\n"
    async with asyncio.timeout(30):
        await ended.wait()  # the agent closed its connection to the runner
    writer.close()


async def test_a_runner_that_cannot_be_reached_is_told_without_the_agents_paths(agent_with, tmp_path: Path) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("not reached")

    offer = await agent_with(never)
    (tmp_path / "runner.sock").unlink()  # the kernel went away
    answer, _, writer = await _greet(offer)
    assert answer == b"cannot reach the runner of kernel k1: No such file or directory\n"
    assert str(tmp_path).encode() not in answer
    writer.close()


async def test_an_app_that_writes_faster_than_its_client_reads_is_held_back_in_the_kernel(agent_with) -> None:
    total = 12 << 20
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readline()
        writer.write(b'{"op":"connected"}\n')
        chunk = bytes(range(256)) * 256
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        await reader.read()

    answer, reader, writer = await _greet(await agent_with(flood), rcvbuf=64 << 10)
    assert answer == TUNNEL_OK
    seen = [-1]

    def stalled() -> bool:  # the app's writes stopped moving (or took more than the agent may buffer)
        moved, seen[0] = sent != seen[0], sent
        return not moved or sent >= 8 << 20

    await async_wait_for(stalled, timeout=60, interval=1.0, message="the app's writes never stopped")
    # the agent buffers at most 128 KiB of it; the rest is the sockets' own buffers (the agent's send
    # buffer may grow to 4 MiB): before, the agent read on into 8 MiB of its memory
    assert sent < 6 << 20, f"the agent took {sent >> 20} MiB from an app whose client read nothing"
    got = 0
    async with asyncio.timeout(60):
        while got < total:  # and then everything arrives
            got += len(await reader.read(1 << 20))
    assert got == total
    writer.close()


async def test_connections_that_send_no_nonce_cannot_keep_the_gateway_out(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, nats_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_tunnels, "HELLO_WITHIN", 120.0)  # they would hold their places the whole test
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        nc = await connect(nats_url, "test")
        offer = await _offer(nc, f"{session_id}-k0", app_port)
        await nc.close()
        silent = [await asyncio.open_connection(offer.host, offer.port) for _ in range(MAX_GREETING)]
        tunnel = await open_app_tunnel(alice, session_id, app_port)  # before: "agent local closed the tunnel"
        assert await _echoed(tunnel, b"through") == b"THROUGH"
        await tunnel.close()
        for _, writer in silent:
            writer.close()
    cluster.check()


async def test_a_message_over_the_bound_closes_the_tunnel(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        tunnel = await open_app_tunnel(alice, session_id, app_port)
        assert await _echoed(tunnel, b"x" * MAX_MESSAGE) == b"X" * MAX_MESSAGE
        await tunnel.send(b"y" * (MAX_MESSAGE + 1))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(30):
                while True:
                    await tunnel.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    cluster.check()


async def test_a_badly_signed_tunnel_is_refused_as_unauthenticated(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
    async with BerthClient(served, keys.alice[0], "not-the-secret-key") as forger:
        with pytest.raises(BerthAPIError) as refused:  # before: HTTP_403, "unknown error"
            await open_app_tunnel(forger, session_id, app_port)
    assert refused.value.code == "UNAUTHENTICATED"
    cluster.check()

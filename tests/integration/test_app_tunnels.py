"""Apps inside sessions through the gateway (DESIGN.md §12): gateway ``/apps/tunnel`` → the agent's tunnel
listener (a one-time nonce from the bus) → the kernel runner's ``connect`` → the app, over real NATS,
PostgreSQL and HTTP. The process backend's kernels share the host's loopback, so the app here is a server
of the test's own."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from contracts.app_tunnels import TUNNEL_OK, AppTunnelOffer, AppTunnelRequest, app_subject
from contracts.reports import AgentHeartbeat
from contracts.subjects import HEARTBEAT_BUCKET
from services.application.sessions import Sessions
from services.common.bus import connect
from services.sdk.app_tunnel import open_app_tunnel
from services.sdk.client import BerthAPIError, BerthClient
from tests.integration.test_exec import backend, cluster, running_session, sessions  # noqa: F401
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401
from tests.support.publish import ServiceTasks
from tests.support.waiting import async_wait_for


@pytest.fixture
async def app_port() -> AsyncIterator[int]:
    """An app on the (kernel's) loopback: answers what it reads upper-cased."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _echoed(tunnel, payload: bytes) -> bytes:
    await tunnel.send(payload)
    got = b""
    async with asyncio.timeout(30):
        while len(got) < len(payload):
            got += await tunnel.recv()
    return got


async def test_a_tunnel_carries_an_apps_bytes_and_keeps_the_kernel_busy_while_open(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, nats_url: str
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        tunnel = await open_app_tunnel(alice, session_id, app_port)
        payload = b"GET / HTTP/1.1\r\n" + bytes(range(256)) * 512
        assert await _echoed(tunnel, payload) == payload.upper()

        nc = await connect(nats_url, "test")
        kv = await nc.jetstream().key_value(HEARTBEAT_BUCKET)

        async def busy() -> list[str]:
            entry = await kv.get("local")
            return msgspec.json.decode(entry.value, type=AgentHeartbeat).busy_kernels

        await async_wait_for(lambda: _contains(busy, f"{session_id}-k0"), timeout=10,
                             message="an open tunnel does not keep its kernel busy")
        await tunnel.close()
        await async_wait_for(lambda: _lacks(busy, f"{session_id}-k0"), timeout=10,
                             message="a closed tunnel still keeps its kernel busy")
        await nc.close()
    cluster.check()


async def _contains(busy, kernel: str) -> bool:
    return kernel in await busy()


async def _lacks(busy, kernel: str) -> bool:
    return kernel not in await busy()


async def test_refusals_name_their_reason_and_open_nothing(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int
) -> None:
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        session_id = await running_session(alice, sessions)
        with pytest.raises(BerthAPIError) as other:
            await open_app_tunnel(bob, session_id, app_port)
        assert other.value.code == "NOT_FOUND"
        with pytest.raises(BerthAPIError) as closed:
            await open_app_tunnel(alice, session_id, _closed_port())
        assert closed.value.code == "CONFLICT" and "nothing accepts connections on port" in closed.value.message
        with pytest.raises(BerthAPIError) as missing:
            await open_app_tunnel(alice, uuid.uuid4().hex, app_port)
        assert missing.value.code == "NOT_FOUND"
        for port in (0, 65536):
            with pytest.raises(BerthAPIError) as bad:
                await open_app_tunnel(alice, session_id, port)
            assert bad.value.code == "BAD_INPUT" and "1 to 65535" in bad.value.message
        ws_url = "ws" + served.rstrip("/")[len("http"):].removesuffix("/graphql")
        with pytest.raises(InvalidStatus) as unsigned:
            await ws_connect(f"{ws_url}/apps/tunnel?session={session_id}&port={app_port}")
        assert unsigned.value.response.status_code == 401
        assert json.loads(unsigned.value.response.body)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{alice.base_url}/apps/tunnel")).status_code == 404
    cluster.check()


def _closed_port() -> int:
    import socket

    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    return port


async def test_the_agents_listener_takes_each_offer_once_and_nothing_else(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, nats_url: str
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
    nc = await connect(nats_url, "test")
    request = msgspec.json.encode(AppTunnelRequest(kernel_id=f"{session_id}-k0", port=app_port))
    offer = msgspec.json.decode((await nc.request(app_subject("local"), request, timeout=10)).data,
                                type=AppTunnelOffer)
    assert offer.ok and offer.host == "127.0.0.1" and len(offer.nonce) >= 32

    async def greet(line: bytes) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(offer.host, offer.port)
        writer.write(line)
        async with asyncio.timeout(30):
            return await reader.readline(), reader, writer

    answer, _, writer = await greet(b"guessed-nonce\n")
    assert answer.startswith(b"refused") and writer.is_closing() is False
    answer, reader, writer = await greet(offer.nonce.encode() + b"\n")
    assert answer == TUNNEL_OK
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 30) == b"PING"
    writer.close()
    answer, _, _ = await greet(offer.nonce.encode() + b"\n")
    assert answer.startswith(b"refused"), "a nonce is used once"
    unknown = msgspec.json.encode(AppTunnelRequest(kernel_id="nobody-k0", port=app_port))
    refused = msgspec.json.decode((await nc.request(app_subject("local"), unknown, timeout=10)).data,
                                  type=AppTunnelOffer)
    assert not refused.ok and "does not run on agent local" in (refused.error or "")
    await nc.close()
    cluster.check()

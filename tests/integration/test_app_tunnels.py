"""Apps inside sessions through the gateway (DESIGN.md §12): gateway ``/apps/tunnel`` → the agent's tunnel
listener (a one-time nonce from the bus) → the kernel runner's ``connect`` → the app, over real NATS,
PostgreSQL and HTTP. The process backend's kernels share the host's loopback, so the app here is a server
of the test's own."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from contracts.app_tunnels import TUNNEL_OK, AppTunnelOffer, AppTunnelRequest, app_subject
from contracts.reports import AgentHeartbeat
from contracts.subjects import HEARTBEAT_BUCKET
from services.agent import app_tunnels
from services.application.context import make_context
from services.application.sessions import Sessions
from services.application.tenancy import Tenancy
from services.gateway.auth.keypairs import deactivate_keypair
from services.common.bus import connect
from services.sdk.app_tunnel import open_app_tunnel
from services.sdk.client import BerthAPIError, BerthClient
from tests.integration.test_exec import backend, cluster, running_session, sessions  # noqa: F401
from tests.integration.test_gateway_abuse import tight_keypair
from tests.integration.test_token_expiry_websockets import expire
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


async def test_a_tunnel_carries_an_apps_bytes_and_its_traffic_reaches_the_heartbeat(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, nats_url: str
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        tunnel = await open_app_tunnel(alice, session_id, app_port)
        before = time.time()
        payload = b"GET / HTTP/1.1\r\n" + bytes(range(256)) * 512
        assert await _echoed(tunnel, payload) == payload.upper()
        await tunnel.close()

        nc = await connect(nats_url, "test")
        kv = await nc.jetstream().key_value(HEARTBEAT_BUCKET)

        async def traffic_seen() -> bool:
            beat = msgspec.json.decode((await kv.get("local")).value, type=AgentHeartbeat)
            return beat.app_traffic.get(f"{session_id}-k0", 0.0) >= before

        await async_wait_for(traffic_seen, timeout=10, message="the app's traffic is not in the agent's heartbeat")
        await nc.close()
    cluster.check()


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


async def _offer(nc, kernel_id: str, port: int) -> AppTunnelOffer:
    """Asks agent ``local`` for an offer, as the gateway does."""
    request = msgspec.json.encode(AppTunnelRequest(kernel_id=kernel_id, port=port))
    return msgspec.json.decode((await nc.request(app_subject("local"), request, timeout=10)).data,
                               type=AppTunnelOffer)


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
    offer = await _offer(nc, f"{session_id}-k0", app_port)
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
    refused = await _offer(nc, "nobody-k0", app_port)
    assert not refused.ok and "does not run on agent local" in (refused.error or "")
    await nc.close()
    cluster.check()


async def test_a_keypair_holds_at_most_its_policys_websockets_in_tunnels_and_refusals_give_theirs_back(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, pg_dsn: str
) -> None:
    carol_keys = tight_keypair(pg_dsn, max_concurrent_subscriptions=2)
    async with BerthClient(served, *carol_keys) as carol:
        session_id = await running_session(carol, sessions)
        for _ in range(3):  # refused after taking a slot: each is given back
            with pytest.raises(BerthAPIError, match="nothing accepts connections"):
                await open_app_tunnel(carol, session_id, _closed_port())
        first = await open_app_tunnel(carol, session_id, app_port)
        second = await open_app_tunnel(carol, session_id, app_port)
        with pytest.raises(BerthAPIError) as third:
            await open_app_tunnel(carol, session_id, app_port)
        assert third.value.code == "SUBSCRIPTION_LIMIT" and "allows 2 open at once" in third.value.message
        await first.close()

        async def one_more_opens() -> bool:
            try:
                await (await open_app_tunnel(carol, session_id, app_port)).close()
                return True
            except BerthAPIError as exc:
                assert exc.code == "SUBSCRIPTION_LIMIT"
                return False

        await async_wait_for(one_more_opens, timeout=15, message="a closed tunnel's slot was not given back")
        assert await _echoed(second, b"still open") == b"STILL OPEN"
        await second.close()
    cluster.check()


async def test_a_tunnel_closes_within_seconds_of_its_keypairs_deactivation(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, pg_dsn: str
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        tunnel = await open_app_tunnel(alice, session_id, app_port)
        assert await _echoed(tunnel, b"hi") == b"HI"
        with Tenancy(pg_dsn) as tenancy:
            deactivate_keypair(tenancy, pg_dsn, keys.alice[0], make_context("test"))
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(15):
                await tunnel.recv()
    cluster.check()


async def test_a_tunnel_opened_with_a_bearer_token_closes_within_seconds_of_the_tokens_expiry(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, pg_dsn: str
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
        token = await alice.issue_token()
    url = "ws" + served[len("http"):] + "/apps/tunnel?" + urlencode({"session": session_id, "port": app_port})
    tunnel = await ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    assert await _echoed(tunnel, b"hi") == b"HI"
    expire(pg_dsn, token)
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(15):
            await tunnel.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.reason == "UNAUTHENTICATED: token expired"
    cluster.check()


async def test_a_connection_to_the_agents_listener_that_sends_no_nonce_is_closed(
    served: str, keys: Keys, cluster: ServiceTasks, sessions: Sessions, app_port: int, nats_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_tunnels, "HELLO_WITHIN", 0.5)
    async with BerthClient(served, *keys.alice) as alice:
        session_id = await running_session(alice, sessions)
    nc = await connect(nats_url, "test")
    offer = await _offer(nc, f"{session_id}-k0", app_port)
    await nc.close()
    reader, writer = await asyncio.open_connection(offer.host, offer.port)
    writer.write(offer.nonce[:10].encode())  # a part of it, never the line's end
    async with asyncio.timeout(15):
        assert await reader.read() == b"", "the agent closes a connection that does not greet in time"
    writer.close()
    cluster.check()

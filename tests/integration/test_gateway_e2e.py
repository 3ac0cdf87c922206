"""The gateway with the real relay and projector: a created session reaches the read models
(read-your-writes through ``afterPosition``) and its events reach a subscription."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.common.settings import Settings
from services.sdk.client import BerthClient
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, clean_streams, keys, read_models, served,
)
from tests.integration.test_gateway_subscriptions import take

relay = pytest.importorskip("services.relay.main")
projector = pytest.importorskip("services.projector.main")

SESSION = """query($id: String!, $pos: Int) {
  session(id: $id, afterPosition: $pos) { id owner status kernels { id status } } }"""


@pytest.fixture
async def pipeline(read_models: str, nats_url: str, clean_streams: Any) -> AsyncIterator[None]:
    """Runs the relay and the projector on the test database and the clean streams."""
    stop = asyncio.Event()
    settings = Settings(pg_dsn=read_models, nats_url=nats_url)
    tasks = [asyncio.create_task(relay.run_relay(settings, stop)),
             asyncio.create_task(projector.run_projector(settings, stop))]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_created_session_is_readable_after_its_position_and_streams(served: str, keys: Keys, pipeline: None) -> None:
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        created = (await alice.execute(CREATE, {"input": {"name": "e2e"}}))["createSession"]
        session_id = created["sessionId"]
        session = (await alice.execute(SESSION, {"id": session_id, "pos": created["position"]}))["session"]
        assert session == {"id": session_id, "owner": keys.alice[0], "status": "PENDING",
                           "kernels": [{"id": f"{session_id}-k0", "status": "PENDING"}]}
        assert (await bob.execute(SESSION, {"id": session_id, "pos": created["position"]}))["session"] is None

        live = asyncio.create_task(take(alice, session_id, 2))
        terminated = (await alice.execute(TERMINATE, {"id": session_id}))["terminateSession"]
        events = await live
        assert [(e["type"], e["position"]) for e in events] == [
            ("session.requested", created["position"]), ("session.status_changed", terminated["position"])]
        after = (await alice.execute(SESSION, {"id": session_id, "pos": terminated["position"]}))["session"]
        assert after["status"] == "CANCELLED"


async def test_a_websocket_message_over_its_limit_closes_the_socket(served: str, keys: Keys) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from services.gateway.main import WS_MAX_MESSAGE

    url = served.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send('{"type":"connection_init","payload":{"pad":"' + "x" * (WS_MAX_MESSAGE + 1) + '"}}')
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value  # message too big
    async with BerthClient(served, *keys.alice) as alice:  # the gateway still serves
        assert (await alice.execute("query { __typename }"))["__typename"] == "Query"

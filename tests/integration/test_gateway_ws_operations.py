"""Operations sent over a websocket (graphql-transport-ws ``subscribe`` messages: queries, mutations and
subscriptions) count against the keypair's rate limit as HTTP requests do: over it, the operation is answered
RATE_LIMITED and not run, the socket stays open; the policy as of now applies to an open socket; a socket has a
bounded number of operations in flight (SUBSCRIPTION_LIMIT past it); the legacy graphql-ws protocol, which had
no such count, is not offered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from services.common.settings import Settings
from services.sdk.client import BerthClient
from tests.integration.test_gateway_abuse import tight_keypair, update_policy
from tests.integration.test_gateway_subscriptions import SUBSCRIBE
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, Keys, clean_streams, keys, read_models, served, serving,
)

QUERY = "{ sessions { edges { id } } }"
FINAL = ("complete", "error")


def requested_sessions(dsn: str) -> int:
    """Returns how many sessions the event store holds (their ``session.requested`` events)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM berth_events WHERE topic = 'session.requested'").fetchone()
    assert row is not None
    return int(row[0])


async def opened(base_url: str, keypair: tuple[str, str]) -> ClientConnection:
    """Returns a websocket to the gateway, authenticated at ``connection_init`` (one request of the rate limit)."""
    async with BerthClient(base_url, *keypair) as client:
        params = client.connection_params()
    url = "ws" + base_url[len("http"):] + "/graphql"
    ws = await ws_connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": params}))
    async with asyncio.timeout(15):
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


@pytest.fixture
async def socket_of() -> AsyncIterator[Any]:
    """Yields ``opened``; closes every socket it opened at the end."""
    sockets: list[ClientConnection] = []

    async def open_one(base_url: str, keypair: tuple[str, str]) -> ClientConnection:
        sockets.append(await opened(base_url, keypair))
        return sockets[-1]

    yield open_one
    for ws in sockets:
        await ws.close()


async def send(ws: ClientConnection, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
    await ws.send(json.dumps({"type": "subscribe", "id": op_id, "payload": {"query": query,
                                                                           "variables": variables or {}}}))


async def answers(ws: ClientConnection, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Returns the messages of the operations ``ids``, read until each got its last (``complete`` or ``error``)."""
    got: dict[str, list[dict[str, Any]]] = {op_id: [] for op_id in ids}
    pending = set(ids)
    async with asyncio.timeout(30):
        while pending:
            message = json.loads(await ws.recv())
            if message.get("id") in got:
                got[message["id"]].append(message)
                if message["type"] in FINAL:
                    pending.discard(message["id"])
    return got


def refusal(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Returns the error of an operation answered with an ``error`` message, None when it ran."""
    return messages[-1]["payload"][0] if messages[-1]["type"] == "error" else None


async def test_operations_over_one_websocket_are_refused_past_the_rate_limit_and_do_not_run(
    served: str, keys: Keys, pg_dsn: str, socket_of: Any,
) -> None:
    carol = tight_keypair(pg_dsn, rate_limit=4)
    before = requested_sessions(pg_dsn)
    ws = await socket_of(served, carol)  # the connection takes one of the 4
    ids = {str(n) for n in range(6)}
    for op_id in sorted(ids):  # all at once: every one is in flight before the first answer
        await send(ws, op_id, CREATE, {"input": {"name": f"s{op_id}"}})
    got = await answers(ws, ids)
    refused = [refusal(messages) for messages in got.values() if refusal(messages) is not None]
    created = [m["payload"]["data"]["createSession"]["sessionId"] for messages in got.values() for m in messages
               if m["type"] == "next"]
    assert len(created) == 3 and len(refused) == 3
    for error in refused:
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["message"].startswith("rate limit exceeded: your resource policy allows 4 requests per "
                                           "15 minutes; retry after ")  # as HTTP's 429 says it
    assert requested_sessions(pg_dsn) == before + 3, "a refused operation recorded nothing"

    await ws.send(json.dumps({"type": "ping"}))  # the socket stays open
    async with asyncio.timeout(15):
        assert json.loads(await ws.recv())["type"] == "pong"
    await send(ws, "again", QUERY)
    assert refusal((await answers(ws, {"again"}))["again"])["extensions"]["code"] == "RATE_LIMITED"


async def test_an_open_websocket_gets_its_policys_lowered_rate_limit_at_its_next_operation(
    served: str, keys: Keys, pg_dsn: str, socket_of: Any,
) -> None:
    carol = tight_keypair(pg_dsn, rate_limit=1000)
    ws = await socket_of(served, carol)
    await send(ws, "1", QUERY)
    assert refusal((await answers(ws, {"1"}))["1"]) is None
    update_policy(pg_dsn, "tight", rate_limit=1)
    await send(ws, "2", QUERY)  # the lowered limit leaves at most 1 in the bucket: taken
    assert refusal((await answers(ws, {"2"}))["2"]) is None
    await send(ws, "3", QUERY)
    error = refusal((await answers(ws, {"3"}))["3"])
    assert error is not None and error["extensions"]["code"] == "RATE_LIMITED"
    assert "allows 1 requests per 15 minutes" in error["message"]


@pytest.fixture
async def served_with_two_operations(read_models: str, keys: Keys, nats_url: str, clean_streams: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """Yields the base URL of a real gateway whose websockets may have 2 operations in flight."""
    monkeypatch.setattr("services.gateway.view.MAX_OPERATIONS", 2, raising=False)
    settings = Settings(pg_dsn=read_models, nats_url=nats_url, gateway_host="127.0.0.1", gateway_port=0)
    async with serving(settings) as url:
        yield url


async def test_operations_past_the_sockets_bound_are_refused_with_a_code(
    served_with_two_operations: str, keys: Keys, socket_of: Any,
) -> None:
    async with BerthClient(served_with_two_operations, *keys.alice) as alice:
        session_id = (await alice.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
    ws = await socket_of(served_with_two_operations, keys.alice)
    for op_id in ("1", "2"):  # nothing is published: both stay in flight
        await send(ws, op_id, SUBSCRIBE, {"id": session_id, "from": 0})
    await send(ws, "3", QUERY)
    error = refusal((await answers(ws, {"3"}))["3"])
    assert error is not None and error["extensions"]["code"] == "SUBSCRIPTION_LIMIT"
    assert "at most 2" in error["message"]
    await ws.send(json.dumps({"type": "complete", "id": "1"}))  # one completed: room for one more
    await send(ws, "4", QUERY)
    assert refusal((await answers(ws, {"4"}))["4"]) is None


async def test_the_legacy_graphql_ws_protocol_is_not_offered(served: str, keys: Keys) -> None:
    async with asyncio.timeout(15), ws_connect("ws" + served[len("http"):] + "/graphql",
                                               subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()  # closed before any connection_init is read
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406


@pytest.mark.parametrize("message", [
    {"id": ["1"], "payload": {"query": QUERY}},  # unhashable: strawberry's handler raised, no close frame
    {"id": "1", "payload": [QUERY]},
    {"id": "1", "payload": {"query": 5}},
    {"id": "1", "payload": {"query": QUERY, "variables": ["x"]}},
    {"id": "1", "payload": {"query": QUERY, "operationName": 7}},
])
async def test_a_subscribe_message_of_the_wrong_shape_closes_the_socket_with_4400(
    served: str, keys: Keys, socket_of: Any, message: dict[str, Any],
) -> None:
    ws = await socket_of(served, keys.alice)
    await ws.send(json.dumps({"type": "subscribe", **message}))
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(15):
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400

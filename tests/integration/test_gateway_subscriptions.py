"""Gateway subscriptions over a real uvicorn server and a real NATS: sessionEvents streams a
session's events from JetStream, resumes after fromPosition without repeats, checks ownership,
and authenticates the websocket (connection_init payload or upgrade headers)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from services.common.settings import Settings
from services.sdk.signing import sign_request
from services.sdk.client import BerthAPIError, BerthClient
from services.gateway.main import run_gateway
from tests.support.publish import publish_from_store
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, clean_streams, keys, read_models, served,
)

SUBSCRIBE = """subscription($id: String!, $from: Int) {
  sessionEvents(sessionId: $id, fromPosition: $from) { position type aggregateId occurredAt actor payload } }"""


async def take(client: BerthClient, session_id: str, count: int, from_position: int = 0) -> list[dict]:
    """Returns the first ``count`` events of a subscription, failing after 15 s."""
    got: list[dict] = []
    async with asyncio.timeout(15):
        async for data in client.subscribe(SUBSCRIBE, {"id": session_id, "from": from_position}):
            got.append(data["sessionEvents"])
            if len(got) == count:
                break
    return got


async def test_session_events_stream_live_and_resume_without_repeats(served: str, keys: Keys, clean_streams, pg_dsn: str) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        mine = (await alice.execute(CREATE, {"input": {}}))["createSession"]
        other = (await alice.execute(CREATE, {"input": {}}))["createSession"]
        published = await publish_from_store(clean_streams, pg_dsn, 0)
        first = await take(alice, mine["sessionId"], 1)
        assert [(e["type"], e["position"]) for e in first] == [("session.requested", mine["position"])]
        assert first[0]["aggregateId"] == mine["sessionId"] and first[0]["actor"] == keys.alice[0]
        assert json.loads(first[0]["payload"])["owner"] == keys.alice[0]

        live = asyncio.create_task(take(alice, mine["sessionId"], 2))
        terminated = (await alice.execute(TERMINATE, {"id": mine["sessionId"]}))["terminateSession"]
        await publish_from_store(clean_streams, pg_dsn, published)
        events = await live
        assert [e["position"] for e in events] == [mine["position"], terminated["position"]]
        assert events[1]["type"] == "session.status_changed"
        assert json.loads(events[1]["payload"])["status"] == "CANCELLED"
        assert other["sessionId"] not in {e["aggregateId"] for e in events}

        resumed = await take(alice, mine["sessionId"], 1, from_position=mine["position"])
        assert [e["position"] for e in resumed] == [terminated["position"]]


async def test_a_client_runs_its_subscriptions_on_one_warm_websocket(
    served: str, keys: Keys, clean_streams, pg_dsn: str
) -> None:
    async with BerthClient(served, *keys.alice) as alice:
        mine = (await alice.execute(CREATE, {"input": {}}))["createSession"]
        await publish_from_store(clean_streams, pg_dsn, 0)
        one_after_another = [await take(alice, mine["sessionId"], 1) for _ in range(3)]
        side_by_side = await asyncio.gather(*(take(alice, mine["sessionId"], 1) for _ in range(3)))
        assert {e[0]["position"] for e in one_after_another + side_by_side} == {mine["position"]}
        left_early = alice.subscribe(SUBSCRIBE, {"id": mine["sessionId"], "from": mine["position"]})
        waiting = asyncio.ensure_future(left_early.__anext__())  # nothing comes: the session has no later event
        await asyncio.sleep(0)
        waiting.cancel()  # the caller gives up: the operation is completed towards the server
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await left_early.aclose()
        assert await take(alice, mine["sessionId"], 1) == one_after_another[0]
        assert alice.websocket_connects == 1


async def test_subscription_checks_ownership_and_credentials(served: str, keys: Keys) -> None:
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob, \
            BerthClient(served, keys.alice[0], "wrong-secret") as forger:
        session_id = (await alice.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        with pytest.raises(BerthAPIError) as hidden:
            await take(bob, session_id, 1)
        assert hidden.value.code == "NOT_FOUND"
        with pytest.raises(BerthAPIError) as forged:
            await take(forger, session_id, 1)
        assert forged.value.code == "UNAUTHENTICATED" and "authentication failed" in forged.value.message


async def _first_message(url: str, init_payload: dict, headers: dict | None = None) -> dict:
    async with asyncio.timeout(15), ws_connect(url, subprotocols=["graphql-transport-ws"],
                                               additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": init_payload}))
        return json.loads(await ws.recv())


async def test_websocket_accepts_a_bearer_token_or_signed_upgrade_headers(served: str, keys: Keys) -> None:
    ws_url = "ws" + served[len("http"):] + "/graphql"
    async with BerthClient(served, *keys.alice) as alice:
        token = await alice.issue_token()
    assert (await _first_message(ws_url, {"authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    host = served.split("://", 1)[1]
    signed = sign_request(access_key=keys.bob[0], secret_key=keys.bob[1], method="GET", path="/graphql",
                          host=host, body=b"")
    headers = {"Authorization": signed["Authorization"], "X-BackendAI-Date": signed["X-BackendAI-Date"],
               "Content-Type": signed["Content-Type"]}
    assert (await _first_message(ws_url, {}, headers))["type"] == "connection_ack"
    with pytest.raises(InvalidStatus) as refused:
        await _first_message(ws_url, {}, {**headers, "Authorization": headers["Authorization"][:-4] + "0000"})
    assert refused.value.response.status_code == 401  # as an HTTP request is refused, with the reason's code
    assert json.loads(refused.value.response.body)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_stopping_the_gateway_ends_a_live_subscription(read_models: str, keys: Keys, nats_url: str, clean_streams) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    settings = Settings(pg_dsn=read_models, nats_url=nats_url, gateway_port=0)
    server = asyncio.create_task(run_gateway(settings, stop, ready.set_result))
    url = await asyncio.wait_for(ready, 30)
    async with BerthClient(url, *keys.alice) as alice:
        session_id = (await alice.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        await publish_from_store(clean_streams, read_models, 0)
        events = alice.subscribe(SUBSCRIBE, {"id": session_id, "from": 0})
        async with asyncio.timeout(15):
            assert (await anext(events))["sessionEvents"]["type"] == "session.requested"
        stop.set()
        await asyncio.wait_for(server, 15)
        with pytest.raises((BerthAPIError, StopAsyncIteration)):
            async with asyncio.timeout(15):
                await anext(events)
        await events.aclose()

"""Limits that hold under abuse, per keypair and from its resource policy: the request rate limit
(HTTP 429 / RATE_LIMITED with Retry-After) and the cap on concurrent subscriptions
(SUBSCRIPTION_LIMIT, the slot given back when the websocket closes); websockets closed within
seconds of their keypair's deactivation; createSession's idempotency key (and the CLI's retries);
aliased read-your-writes waits that hold no pool connection."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from contracts import tenancy_commands as tc
from contracts.tenancy import policy_id
from services.application.context import make_context
from services.application.tenancy import Tenancy
from services.cli.sessions_common import request_session
from services.gateway.app import GatewayApp
from services.common.settings import Settings
from services.gateway.auth.keypairs import create_keypair, deactivate_keypair
from services.gateway.main import build_app
from services.sdk.client import BerthAPIError, BerthClient
from tests.integration.test_gateway_subscriptions import SUBSCRIBE, publish_from_store
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, clean_streams, client_for, count_events, create_user, gateway, keys, read_models, served,
    set_position,
)

QUERY = "{ sessions { edges { id } } }"


def tight_keypair(dsn: str, **limits: int) -> tuple[str, str]:
    """Returns a keypair of a new user carol whose resource policy ``tight`` has ``limits``."""
    with Tenancy(dsn) as tenancy:
        tenancy.handle(policy_id("tight"), tc.CreateResourcePolicy(name="tight", limits=tc.LimitsChange(**limits)),
                       make_context("test"))
    create_user(dsn, "carol")
    return create_keypair(dsn, "carol", resource_policy="tight")


async def open_one_subscription(carol: BerthClient, streams, dsn: str) -> tuple[str, AsyncGenerator[dict, None]]:
    """Creates a session of carol's and opens one subscription to its events (first event read);
    returns the session id and the open subscription."""
    session_id = (await carol.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
    await publish_from_store(streams, dsn, 0)
    first = carol.subscribe(SUBSCRIBE, {"id": session_id, "from": 0})
    async with asyncio.timeout(15):
        assert (await anext(first))["sessionEvents"]["type"] == "session.requested"
    return session_id, first


async def refused_subscription(carol: BerthClient, session_id: str) -> BerthAPIError:
    """Returns the error of one more subscription of carol's to the session's events."""
    with pytest.raises(BerthAPIError) as refused:
        async with asyncio.timeout(15):
            await anext(carol.subscribe(SUBSCRIBE, {"id": session_id, "from": 0}))
    return refused.value


async def test_requests_over_the_rate_limit_get_429_with_retry_after(gateway: GatewayApp, keys: Keys, pg_dsn: str) -> None:
    carol = tight_keypair(pg_dsn, rate_limit=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as http:
        client = BerthClient("http://gateway.test", *carol, transport=httpx.ASGITransport(app=gateway))
        for _ in range(3):
            assert await client.execute(QUERY) == {"sessions": {"edges": []}}
        body = json.dumps({"query": CREATE, "variables": {"input": {}}}).encode()
        before = count_events(pg_dsn)
        refused = await http.post(client.graphql_url, content=body,
                                  headers=client.signed_headers("POST", client.graphql_url, body))
        assert refused.status_code == 429
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert "3 requests per 15 minutes" in error["message"]
        assert refused.headers["retry-after"] == "300"  # 3 per 900 s: the next one in 300 s
        assert refused.headers["x-ratelimit-limit"] == "3"
        assert count_events(pg_dsn) == before, "a refused request records nothing"
        with pytest.raises(BerthAPIError) as sdk:
            await client.issue_token()  # POST /auth/token counts too
        assert sdk.value.code == "RATE_LIMITED"
        await client.aclose()


async def test_the_rate_limit_is_per_keypair(client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys,
                                             pg_dsn: str) -> None:
    carol = client_for(tight_keypair(pg_dsn, rate_limit=1))
    await carol.execute(QUERY)
    with pytest.raises(BerthAPIError) as refused:
        await carol.execute(QUERY)
    assert refused.value.code == "RATE_LIMITED"
    bob = client_for(keys.bob)  # the default policy: 30,000 per 15 minutes
    for _ in range(5):
        await bob.execute(QUERY)


async def test_a_policy_of_rate_limit_zero_has_no_limit(client_for: Callable[[tuple[str, str]], BerthClient],
                                                        keys: Keys, pg_dsn: str) -> None:
    carol = client_for(tight_keypair(pg_dsn, rate_limit=0))
    for _ in range(20):
        await carol.execute(QUERY)


def update_policy(dsn: str, name: str, **limits: int) -> None:
    """Changes policy ``name`` straight in the event store, as any writer (not this gateway) may."""
    with Tenancy(dsn) as tenancy:
        tenancy.handle(policy_id(name), tc.UpdateResourcePolicy(limits=tc.LimitsChange(**limits)), make_context("test"))


async def test_a_policy_change_applies_to_the_very_next_request(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str,
) -> None:
    carol = client_for(tight_keypair(pg_dsn, rate_limit=1000))
    await carol.execute(QUERY)  # the gateway now holds carol's limits: 1,000 per 15 minutes
    update_policy(pg_dsn, "tight", rate_limit=1)
    await carol.execute(QUERY)  # the lowered limit leaves at most 1 in the bucket: taken
    with pytest.raises(BerthAPIError) as refused:
        await carol.execute(QUERY)
    assert refused.value.code == "RATE_LIMITED" and "1 requests per 15 minutes" in refused.value.message


async def test_a_keypairs_new_policy_applies_to_the_very_next_request(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str,
) -> None:
    carol_keys = tight_keypair(pg_dsn, rate_limit=1000)
    carol = client_for(carol_keys)
    await carol.execute(QUERY)  # the gateway now holds carol's limits: 1,000 per 15 minutes
    with Tenancy(pg_dsn) as tenancy:
        ctx = make_context("test")
        tenancy.handle(policy_id("single"), tc.CreateResourcePolicy(name="single", limits=tc.LimitsChange(rate_limit=1)),
                       ctx)
        tenancy.handle(carol_keys[0], tc.ChangeKeypairPolicy(resource_policy="single"), ctx)
    await carol.execute(QUERY)
    with pytest.raises(BerthAPIError) as refused:
        await carol.execute(QUERY)
    assert refused.value.code == "RATE_LIMITED" and "1 requests per 15 minutes" in refused.value.message


async def test_a_new_subscription_sees_a_policy_changed_after_its_websocket_opened(
    served: str, keys: Keys, clean_streams, pg_dsn: str,
) -> None:
    carol_keys = tight_keypair(pg_dsn, max_concurrent_subscriptions=2)
    async with BerthClient(served, *carol_keys) as carol:
        session_id, first = await open_one_subscription(carol, clean_streams, pg_dsn)
        update_policy(pg_dsn, "tight", max_concurrent_subscriptions=1)
        refused = await refused_subscription(carol, session_id)
        assert refused.code == "SUBSCRIPTION_LIMIT" and "allows 1 open at once" in refused.message
        await first.aclose()


async def test_a_websocket_connection_counts_against_the_rate_limit(served: str, keys: Keys, pg_dsn: str) -> None:
    carol_keys = tight_keypair(pg_dsn, rate_limit=1)
    async with BerthClient(served, *carol_keys) as carol:
        session_id = (await carol.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        refused = await refused_subscription(carol, session_id)
    assert refused.code == "RATE_LIMITED" and "retry after" in refused.message


async def test_subscriptions_over_the_cap_are_refused_until_one_closes(
    served: str, keys: Keys, clean_streams, pg_dsn: str,
) -> None:
    carol_keys = tight_keypair(pg_dsn, max_concurrent_subscriptions=1)
    async with BerthClient(served, *carol_keys) as carol:
        session_id, first = await open_one_subscription(carol, clean_streams, pg_dsn)
        refused = await refused_subscription(carol, session_id)
        assert refused.code == "SUBSCRIPTION_LIMIT"
        assert "allows 1 open at once" in refused.message
        await first.aclose()  # closes its websocket: the gateway gives the slot back

        async def second_opens() -> bool:
            try:
                async with asyncio.timeout(15):
                    await anext(carol.subscribe(SUBSCRIBE, {"id": session_id, "from": 0}))
                return True
            except BerthAPIError as exc:
                assert exc.code == "SUBSCRIPTION_LIMIT"
                return False

        async with asyncio.timeout(15):
            while not await second_opens():
                await asyncio.sleep(0.1)  # the server notices the close on its own schedule; bounded above


async def test_websockets_close_within_seconds_of_their_keypairs_deactivation(
    served: str, keys: Keys, clean_streams, pg_dsn: str,
) -> None:
    """Alice's live subscription ends with UNAUTHENTICATED a few seconds after her keypair is
    deactivated (the gateway re-checks every 2 s); Bob's, on the same gateway, goes on."""
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        mine = (await alice.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        his = (await bob.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        published = await publish_from_store(clean_streams, pg_dsn, 0)
        alice_events = alice.subscribe(SUBSCRIBE, {"id": mine, "from": 0})
        bob_events = bob.subscribe(SUBSCRIBE, {"id": his, "from": 0})
        async with asyncio.timeout(15):
            assert (await anext(alice_events))["sessionEvents"]["type"] == "session.requested"
            assert (await anext(bob_events))["sessionEvents"]["type"] == "session.requested"
        with Tenancy(pg_dsn) as tenancy:
            deactivate_keypair(tenancy, pg_dsn, keys.alice[0], make_context("test"))
        started = time.monotonic()
        with pytest.raises(BerthAPIError) as closed:
            async with asyncio.timeout(15):
                await anext(alice_events)
        elapsed = time.monotonic() - started
        assert closed.value.code == "UNAUTHENTICATED" and "deactivated" in closed.value.message
        assert elapsed < 10, f"closed after {elapsed:.1f} s"
        await alice_events.aclose()
        terminated = (await bob.execute(TERMINATE, {"id": his}))["terminateSession"]["position"]
        await publish_from_store(clean_streams, pg_dsn, published)
        async with asyncio.timeout(15):
            assert (await anext(bob_events))["sessionEvents"]["position"] == terminated
        await bob_events.aclose()


async def test_a_retried_create_session_with_its_idempotency_key_creates_one_session(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str,
) -> None:
    alice = client_for(keys.alice)
    first = (await alice.execute(CREATE, {"input": {"idempotencyKey": "k-1"}}))["createSession"]
    after_first = count_events(pg_dsn)
    again = (await alice.execute(CREATE, {"input": {"idempotencyKey": "k-1", "name": "other"}}))["createSession"]
    assert again["sessionId"] == first["sessionId"] and again["position"] >= first["position"]
    assert count_events(pg_dsn) == after_first, "the retry records nothing"
    other = (await alice.execute(CREATE, {"input": {"idempotencyKey": "k-2"}}))["createSession"]
    assert other["sessionId"] != first["sessionId"]
    bobs = (await client_for(keys.bob).execute(CREATE, {"input": {"idempotencyKey": "k-1"}}))["createSession"]
    assert bobs["sessionId"] not in (first["sessionId"], other["sessionId"]), "keys are scoped per keypair"


async def test_concurrent_requests_with_one_idempotency_key_create_one_session(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str,
) -> None:
    alice = client_for(keys.alice)
    before = count_events(pg_dsn)
    results = await asyncio.gather(*(alice.execute(CREATE, {"input": {"idempotencyKey": "same"}}) for _ in range(6)))
    assert len({r["createSession"]["sessionId"] for r in results}) == 1
    assert count_events(pg_dsn) == before + 2  # one session.requested and the claim of its name


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "tab\t"])
async def test_a_bad_idempotency_key_is_bad_input_and_records_nothing(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, pg_dsn: str, key: str,
) -> None:
    before = count_events(pg_dsn)
    with pytest.raises(BerthAPIError) as refused:
        await client_for(keys.alice).execute(CREATE, {"input": {"idempotencyKey": key}})
    assert refused.value.code == "BAD_INPUT" and "idempotencyKey" in refused.value.message
    assert count_events(pg_dsn) == before


class _AnswerLost(httpx.AsyncBaseTransport):
    """Delivers every request to the gateway but loses the first ``lose`` answers (a reset connection)."""

    def __init__(self, app: GatewayApp, lose: int) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self.lose = lose
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.sent += 1
        if self.lose > 0:
            self.lose -= 1
            await response.aclose()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


async def test_the_cli_retries_a_lost_create_session_with_the_same_key(gateway: GatewayApp, keys: Keys,
                                                                      pg_dsn: str) -> None:
    transport = _AnswerLost(gateway, lose=2)
    before = count_events(pg_dsn)
    async with BerthClient("http://gateway.test", *keys.alice, transport=transport) as alice:
        session_id, _ = await request_session(alice, {})
        assert transport.sent == 3, "sent, lost twice, re-sent (each signed afresh: no replay)"
        assert count_events(pg_dsn) == before + 2, "three deliveries, one session"
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM berth_events WHERE originator_id = %s",
                            (session_id,)).fetchone()[0] == 1


async def test_many_aliased_read_your_writes_waits_hold_no_pool_connection(read_models: str, keys: Keys) -> None:
    """60 afterPosition waits (3 requests of 20 aliases) on a gateway whose pool has 8 connections:
    they wait on the one LISTEN connection of the position watcher, not on the pool, so a plain query
    is answered while they wait, and they all end once the read models reach their position."""
    app = build_app(Settings(pg_dsn=read_models), read_wait=60.0)
    try:
        alice = BerthClient("http://gateway.test", *keys.alice, transport=httpx.ASGITransport(app=app))
        aliased = "{ " + " ".join(f"a{i}: sessions(afterPosition: 50) {{ edges {{ id }} }}" for i in range(20)) + " }"
        waits = [asyncio.create_task(alice.execute(aliased)) for _ in range(3)]
        async with asyncio.timeout(30):
            while app.resources.positions.waiting < 60:  # until every alias waits (deadline above)
                await asyncio.sleep(0.02)
            stats = app.resources.pool.get_stats()
            assert await alice.execute(QUERY) == {"sessions": {"edges": []}}
        assert stats["pool_size"] - stats.get("pool_available", 0) <= 1, stats
        assert stats.get("requests_waiting", 0) == 0, stats
        assert not any(wait.done() for wait in waits), "the read models are not at 50 yet"
        with psycopg.connect(read_models) as conn:
            set_position(conn, 50)
        async with asyncio.timeout(30):
            results = await asyncio.gather(*waits)
        assert all(len(result) == 20 for result in results)
        assert app.resources.positions.connects == 1
        await alice.aclose()
    finally:
        await app.aclose()


async def test_a_signed_websocket_upgrade_over_the_rate_limit_gets_429(served: str, keys: Keys, pg_dsn: str) -> None:
    carol_keys = tight_keypair(pg_dsn, rate_limit=1)
    async with BerthClient(served, *carol_keys) as carol:
        await carol.execute(QUERY)
        headers = carol.signed_headers("GET", carol.graphql_url, b"")
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(15), ws_connect("ws" + served[len("http"):] + "/graphql",
                                                   subprotocols=["graphql-transport-ws"], additional_headers=headers):
            pass
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "900"
    assert json.loads(refused.value.response.body)["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_a_keypair_holds_at_most_its_policy_s_websockets_subscribed_or_not(
    served: str, keys: Keys, pg_dsn: str,
) -> None:
    """Each websocket is a socket the gateway holds: idle ones too count (before, one keypair could open as
    many as it liked, each with no subscription, until the gateway had no file descriptor left)."""
    carol_keys = tight_keypair(pg_dsn, max_concurrent_subscriptions=2)
    url = "ws" + served[len("http"):] + "/graphql"
    async with BerthClient(served, *carol_keys) as carol:
        token = await carol.issue_token()
        signed = carol.signed_headers("GET", carol.graphql_url, b"")

    async def opened(**upgrade: object) -> tuple[object, dict]:
        ws = await ws_connect(url, subprotocols=["graphql-transport-ws"], **upgrade)
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        try:
            async with asyncio.timeout(15):
                return ws, json.loads(await ws.recv())
        except ConnectionClosed as closed:
            return ws, {"closed": closed.rcvd.reason if closed.rcvd else ""}

    first, second = [await opened() for _ in range(2)]
    assert first[1]["type"] == second[1]["type"] == "connection_ack"
    third, refused = await opened(additional_headers=signed)  # a signed upgrade counts the same
    assert refused["closed"].startswith("SUBSCRIPTION_LIMIT: too many websocket connections"), refused
    await first[0].close()  # its slot comes back once the gateway sees the close

    async def another_opens() -> bool:
        ws, answer = await opened()
        await ws.close()
        return answer.get("type") == "connection_ack"

    async with asyncio.timeout(15):
        while not await another_opens():
            await asyncio.sleep(0.1)  # the server notices the close on its own schedule; bounded above
    await second[0].close()

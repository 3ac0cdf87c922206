"""Limits that hold under abuse, per keypair and from its resource policy: the request rate limit
(HTTP 429 / RATE_LIMITED with Retry-After) and the cap on concurrent subscriptions
(SUBSCRIPTION_LIMIT, the slot given back when the websocket closes); websockets closed within
seconds of their keypair's deactivation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest

from contracts import tenancy_commands as tc
from contracts.tenancy import policy_id
from services.application.context import make_context
from services.application.tenancy import Tenancy
from services.gateway.app import GatewayApp
from services.gateway.auth.keypairs import create_keypair, deactivate_keypair
from services.sdk.client import BerthAPIError, BerthClient
from tests.integration.test_gateway_subscriptions import SUBSCRIBE, publish_from_store
from tests.support.gateway import (  # noqa: F401 - fixtures
    CREATE, TERMINATE, Keys, clean_streams, client_for, count_events, create_user, gateway, keys, read_models, served,
)

QUERY = "{ sessions { edges { id } } }"


def tight_keypair(dsn: str, **limits: int) -> tuple[str, str]:
    """Returns a keypair of a new user carol whose resource policy ``tight`` has ``limits``."""
    with Tenancy(dsn) as tenancy:
        tenancy.handle(policy_id("tight"), tc.CreateResourcePolicy(name="tight", limits=tc.LimitsChange(**limits)),
                       make_context("test"))
    create_user(dsn, "carol")
    return create_keypair(dsn, "carol", resource_policy="tight")


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


async def test_subscriptions_over_the_cap_are_refused_until_one_closes(
    served: str, keys: Keys, clean_streams, pg_dsn: str,
) -> None:
    carol_keys = tight_keypair(pg_dsn, max_concurrent_subscriptions=1)
    async with BerthClient(served, *carol_keys) as carol:
        session_id = (await carol.execute(CREATE, {"input": {}}))["createSession"]["sessionId"]
        await publish_from_store(clean_streams, pg_dsn, 0)
        first = carol.subscribe(SUBSCRIBE, {"id": session_id, "from": 0})
        async with asyncio.timeout(15):
            assert (await anext(first))["sessionEvents"]["type"] == "session.requested"
        with pytest.raises(BerthAPIError) as refused:
            async with asyncio.timeout(15):
                await anext(carol.subscribe(SUBSCRIBE, {"id": session_id, "from": 0}))
        assert refused.value.code == "SUBSCRIPTION_LIMIT"
        assert "allows 1 open at once" in refused.value.message
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

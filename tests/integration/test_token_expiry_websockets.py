"""A websocket opened with a bearer token ends when the token expires (12 hours after ``POST /auth/token``), as
one of a deactivated keypair does: before, a GraphQL websocket (subscriptions, exec streams) or an app tunnel
authenticated once with a token stayed open as long as its client liked, its token expired or not.

The tests do not wait 12 hours: a token's expiry is its row's ``expires_at`` (``auth_tokens``), which PostgreSQL's
``now()`` is compared with, for an HTTP request as for an open websocket; the test moves it to now."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from services.sdk.client import BerthAPIError, BerthClient
from services.sdk.subscriptions import closed_error
from tests.support.gateway import Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures

QUERY = "{ sessions { edges { id } } }"


def expire(dsn: str, token: str) -> None:
    """Makes ``token`` expire now, as 12 hours after its issue."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        expired = conn.execute("UPDATE auth_tokens SET expires_at = now() WHERE token_hash = %s",
                               (hashlib.sha256(token.encode()).hexdigest(),)).rowcount
    assert expired == 1


async def opened(served: str, token: str, *, in_upgrade: bool) -> ClientConnection:
    """Returns an acknowledged graphql-transport-ws socket authenticated with ``token`` in its upgrade's
    ``Authorization`` header or in its ``connection_init``."""
    url = "ws" + served[len("http"):] + "/graphql"
    bearer = f"Bearer {token}"
    headers = {"Authorization": bearer} if in_upgrade else None
    ws = await ws_connect(url, subprotocols=["graphql-transport-ws"], additional_headers=headers)
    await ws.send(json.dumps({"type": "connection_init", "payload": {} if in_upgrade else {"authorization": bearer}}))
    async with asyncio.timeout(15):
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def answered(ws: ClientConnection, operation: str) -> dict[str, Any]:
    """Returns the first answer to ``operation`` sent over ``ws``."""
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": operation}}))
    async with asyncio.timeout(15):
        return json.loads(await ws.recv())


@pytest.mark.parametrize("in_upgrade", [False, True], ids=["connection_init", "upgrade"])
async def test_a_websocket_closes_within_seconds_of_its_bearer_tokens_expiry(
    served: str, keys: Keys, read_models: str, in_upgrade: bool
) -> None:
    """The socket of the expired token is closed with 4403 ``UNAUTHENTICATED: token expired`` within seconds (the
    gateway re-checks every 2 s); one of a token still valid, of the same keypair on the same gateway, goes on."""
    async with BerthClient(served, *keys.alice) as alice:
        expiring, lasting = await alice.issue_token(), await alice.issue_token()
    doomed = await opened(served, expiring, in_upgrade=in_upgrade)
    kept = await opened(served, lasting, in_upgrade=in_upgrade)
    assert (await answered(doomed, QUERY))["type"] == "next"
    expire(read_models, expiring)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(15):
            while True:
                await doomed.recv()
    elapsed = time.monotonic() - started
    assert closed.value.rcvd is not None, "the gateway closed it with a reason"
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "UNAUTHENTICATED: token expired")
    assert elapsed < 10, f"closed after {elapsed:.1f} s"
    assert (await answered(kept, QUERY))["payload"] == {"data": {"sessions": {"edges": []}}}
    await kept.close()


async def test_a_subscription_of_an_expired_token_ends_unauthenticated_through_the_sdk(
    served: str, keys: Keys, read_models: str
) -> None:
    """What a client of the SDK is told: its subscription ends with UNAUTHENTICATED, the token expired."""
    async with BerthClient(served, *keys.alice) as alice:
        token = await alice.issue_token()
    ws = await opened(served, token, in_upgrade=False)
    expire(read_models, token)
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(15):
            await ws.recv()
    error = closed_error(closed.value)
    assert isinstance(error, BerthAPIError)
    assert (error.code, error.message) == ("UNAUTHENTICATED", "token expired")

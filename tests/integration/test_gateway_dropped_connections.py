"""A real gateway after PostgreSQL dropped every connection (a restart, a failover, an administrator):
the next requests succeed, queries and websocket subscriptions alike. Before, each idle connection of
the gateway's pool was dead, and each of the next requests met one: UNAVAILABLE over HTTP, and a
websocket closed without a reason (its connection_init authentication failed unhandled)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from services.gateway import pool_check
from services.gateway.auth.verify import Authenticator
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.gateway import CREATE, Keys, clean_streams, keys, read_models, served  # noqa: F401 - fixtures

SESSIONS = "query { sessions(first: 5) { edges { id } } }"
STATUS = "subscription($id: String!) { sessionStatus(sessionId: $id) { status } }"


def _drop_every_other_connection(dsn: str) -> int:
    """Terminates every other backend of the database, as a server restart would; returns how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


async def _subscribed_answer(client: BerthClient) -> str:
    """Subscribes to the status of a session nobody has: authenticated at connection_init, the resolver's
    NOT_FOUND answers; returns the error's code."""
    with pytest.raises(BerthAPIError) as answer:
        async with asyncio.timeout(15):
            async for _ in client.subscribe(STATUS, {"id": "0123456789abcdef0123456789abcdef"}):
                pass
    return answer.value.code


@pytest.mark.parametrize("first", ["query", "subscription"])
async def test_requests_after_the_database_dropped_every_connection_succeed(
        served: str, keys: Keys, read_models: str, first: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Every connection checked here: a restart takes longer than the pool's ``CHECK_AFTER_IDLE``, this test
    does not.)"""
    monkeypatch.setattr(pool_check, "CHECK_AFTER_IDLE", 0.0)
    async with BerthClient(served, *keys.alice) as alice:
        await alice.execute(CREATE, {"input": {}})
        await asyncio.gather(*(alice.execute(SESSIONS) for _ in range(8)))  # the pool holds several connections
        assert await asyncio.to_thread(_drop_every_other_connection, read_models) >= 2
        for _ in range(4):
            if first == "query":
                assert isinstance((await alice.execute(SESSIONS))["sessions"]["edges"], list)
            else:
                assert await _subscribed_answer(alice) == "NOT_FOUND"


async def test_a_websocket_authenticated_while_postgresql_is_away_is_refused_unavailable(
        served: str, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the connection_init's authentication failed unhandled: the socket closed without a reason
    (CONNECTION_CLOSED), where an HTTP request is answered UNAVAILABLE, which clients retry."""
    async def away(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError("connection failed: server closed the connection unexpectedly")

    monkeypatch.setattr(Authenticator, "authenticate", away)
    async with BerthClient(served, *keys.alice) as alice:
        with pytest.raises(BerthAPIError) as refused:
            async with asyncio.timeout(15):
                async for _ in alice.subscribe(STATUS, {"id": "0123456789abcdef0123456789abcdef"}):
                    pass
    assert (refused.value.code, refused.value.message) == ("UNAVAILABLE", "postgresql is unavailable; retry")


async def test_a_request_met_by_a_full_disk_is_refused_saying_so(
        served: str, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL up but its disk full: UNAVAILABLE (nothing recorded, retry later) saying that the disk is full,
    over HTTP and at a websocket's connection_init (it said "postgresql is unavailable; retry")."""
    async def full(*args: object, **kwargs: object) -> None:
        raise psycopg.errors.DiskFull('could not extend file "base/16384/16545": No space left on device')

    monkeypatch.setattr(Authenticator, "screen", full)  # the first step of every authentication, HTTP or websocket
    async with BerthClient(served, *keys.alice) as alice:
        with pytest.raises(BerthAPIError) as over_http:
            await alice.execute(SESSIONS)
        with pytest.raises(BerthAPIError) as over_websocket:
            async with asyncio.timeout(15):
                async for _ in alice.subscribe(STATUS, {"id": "0123456789abcdef0123456789abcdef"}):
                    pass
    for refused in (over_http.value, over_websocket.value):
        assert refused.code == "UNAVAILABLE" and "disk is full" in refused.message, refused

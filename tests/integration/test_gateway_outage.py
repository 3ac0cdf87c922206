"""A request that arrives while PostgreSQL is away is answered UNAVAILABLE (HTTP 503 at
authentication, the GraphQL code in a resolver) and records nothing; the SDK sends
``createSession`` again with its idempotency key until the store is back, and exactly one session
is recorded. Found by the fault suite (ops/faults): 11 of 500 requests during a 10 s outage got
HTTP 500 or INTERNAL, which no client retries. ``terminateSession`` is sent again the same way
(``execute_while_unavailable``, as `berth session rm` and the soak driver send it): the fault suite
once saw 7 terminations refused UNAVAILABLE in a 3 s outage, and their sessions left running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import httpx
import pytest

from services.cli.queries import TERMINATE_SESSION
from services.common.settings import Settings
from services.gateway import resources
from services.gateway.main import build_app
from services.sdk.client import BerthAPIError, BerthClient
from tests.support.gateway import CREATE, Keys, count_events
from tests.support.gateway import keys, read_models  # noqa: F401 - fixtures
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waiting import async_wait_for

SESSION = {"name": "during-outage"}
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _quick_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_CONNECT_TIMEOUT", "1")  # a try fails in seconds, not minutes


@contextlib.asynccontextmanager
async def gateway_behind_proxy(read_models: str, keys: Keys) -> AsyncIterator[tuple[Any, BerthClient]]:
    """Yields a proxy in front of the read models' PostgreSQL and alice's client of a gateway behind it."""
    async with tcp_proxy(read_models) as proxy:
        app = build_app(Settings(pg_dsn=proxy.url(read_models)), read_wait=2.0)
        try:
            async with BerthClient("http://gateway.test", *keys.alice, transport=httpx.ASGITransport(app=app)) as alice:
                yield proxy, alice
        finally:
            await app.aclose()


async def sent_through_outage(proxy: Any, caplog: pytest.LogCaptureFixture, request: Awaitable[T]) -> T:
    """Closes the proxy, sends ``request``, and opens the proxy again once the gateway answered it
    UNAVAILABLE at least twice (the request sent again); returns its answer."""
    await proxy.close()
    task = asyncio.ensure_future(request)
    await async_wait_for(lambda: len(_unavailable(caplog)) >= 2 or task.done(), timeout=120,
                         message="the gateway never answered UNAVAILABLE twice")
    assert not task.done(), task
    await proxy.open()
    return await asyncio.wait_for(task, 90)


async def test_a_request_while_postgresql_is_away_is_unavailable_and_records_nothing(
        read_models: str, keys: Keys, pg_dsn: str) -> None:
    async with gateway_behind_proxy(read_models, keys) as (proxy, alice):
        await alice.execute("query { sessions(first: 1) { edges { id } } }")  # the pool is open
        before = count_events(pg_dsn)
        await proxy.close()
        with pytest.raises(BerthAPIError) as refused:
            await alice.execute(CREATE, {"input": {**SESSION, "idempotencyKey": "outage-1"}})
        assert refused.value.code in ("UNAVAILABLE", "HTTP_503"), refused.value
        assert "postgresql" in refused.value.message
        assert count_events(pg_dsn) == before


async def test_each_request_while_postgresql_is_away_waits_for_a_connection_at_most_the_pool_wait(
        read_models: str, keys: Keys, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg_pool's default wait (30 s) held every request of an outage for half a minute before its 503."""
    monkeypatch.setattr(resources, "POOL_WAIT", 1.0)
    async with gateway_behind_proxy(read_models, keys) as (proxy, alice):
        await alice.execute("query { sessions(first: 1) { edges { id } } }")
        before = count_events(pg_dsn)
        await proxy.close()
        started = time.monotonic()
        for attempt in range(3):
            with pytest.raises(BerthAPIError) as refused:
                await alice.execute(CREATE, {"input": {**SESSION, "idempotencyKey": f"outage-wait-{attempt}"}})
            assert refused.value.code in ("UNAVAILABLE", "HTTP_503"), refused.value
        assert time.monotonic() - started < 25, "a request waited longer than the pool wait and a connect attempt"
        assert count_events(pg_dsn) == before


async def test_the_sdk_sends_create_session_again_until_the_store_is_back_and_one_session_is_recorded(
        read_models: str, keys: Keys, pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.gateway.auth.middleware")
    async with gateway_behind_proxy(read_models, keys) as (proxy, alice):
        await alice.execute("query { sessions(first: 1) { edges { id } } }")
        before = count_events(pg_dsn)
        created = await sent_through_outage(proxy, caplog, alice.create_session(dict(SESSION)))
    assert created["sessionId"]
    assert count_events(pg_dsn) == before + 2, "one session: its request and its name claim"


async def test_a_termination_is_sent_again_until_the_store_is_back(
        read_models: str, keys: Keys, pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.gateway.auth.middleware")
    async with gateway_behind_proxy(read_models, keys) as (proxy, alice):
        session_id = (await alice.create_session(dict(SESSION)))["sessionId"]
        before = count_events(pg_dsn)
        terminated = await sent_through_outage(
            proxy, caplog, alice.execute_while_unavailable(TERMINATE_SESSION, {"id": session_id}))
    assert terminated["terminateSession"]["sessionId"] == session_id
    assert count_events(pg_dsn) > before, "the termination was not recorded"


def _unavailable(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "is away" in r.getMessage()]

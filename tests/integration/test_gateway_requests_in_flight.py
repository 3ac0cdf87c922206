"""A keypair has at most ``MAX_IN_FLIGHT`` HTTP requests served at once (``services.gateway.auth.middleware``); its
others wait their turn, and another keypair's request is served meanwhile. Before, one keypair's burst (400
concurrent queries, within its rate limit) held every connection of the gateway's pool: another keypair's request
waited 10 s and was answered 503."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from services.gateway.auth.middleware import MAX_IN_FLIGHT
from services.sdk.client import BerthClient
from tests.integration.test_gateway_ws_operations import answers, send, socket_of  # noqa: F401 - a fixture
from tests.support.gateway import (  # noqa: F401 - fixtures
    Keys, clean_streams, client_for, gateway, keys, read_models, served,
)

pytestmark = pytest.mark.asyncio

AGENTS = "{ agents { id } }"
WITHIN = 30.0


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], asyncio.Event]:
    """Returns how many ``agents`` queries each caller has begun, and the event that lets alice's end: until it is
    set, each of alice's holds its turn."""
    inside: Counter[str] = Counter()
    release = asyncio.Event()

    async def held_agents(pool: Any, user: tuple[str, str] | None = None) -> list[Any]:
        caller = user[1] if user else "admin"
        inside[caller] += 1
        if caller == "alice":
            await release.wait()
        return []

    monkeypatch.setattr("services.gateway.sessions.readmodels.list_agents", held_agents)
    return inside, release


async def until(condition: Callable[[], bool]) -> None:
    """Returns once ``condition()`` holds; fails after ``WITHIN`` seconds."""
    async with asyncio.timeout(WITHIN):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_keypair_s_burst_waits_its_turn_and_another_keypair_is_served(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, held: tuple[Counter[str], asyncio.Event],
) -> None:
    inside, release = held
    alice, bob = client_for(keys.alice), client_for(keys.bob)
    burst = [asyncio.create_task(alice.execute(AGENTS)) for _ in range(MAX_IN_FLIGHT + 3)]
    try:
        await until(lambda: inside["alice"] >= MAX_IN_FLIGHT)
        assert await asyncio.wait_for(bob.execute(AGENTS), WITHIN) == {"agents": []}
        assert inside["alice"] == MAX_IN_FLIGHT  # the others wait for a turn of alice's
    finally:
        release.set()
    results = await asyncio.wait_for(asyncio.gather(*burst), WITHIN)
    assert results == [{"agents": []}] * (MAX_IN_FLIGHT + 3) and inside["alice"] == MAX_IN_FLIGHT + 3


async def test_a_keypair_s_websocket_queries_take_the_same_turns_as_its_http_requests(
    served: str, keys: Keys, socket_of: Callable[..., Any], held: tuple[Counter[str], asyncio.Event],
) -> None:
    """Before, queries and mutations sent over websockets ran without a turn: a keypair's sockets (64 of 100
    operations each) ran thousands at once beside its HTTP requests."""
    inside, release = held
    ws = await socket_of(served, keys.alice)
    ids = {f"q{i}" for i in range(MAX_IN_FLIGHT + 3)}
    for op_id in ids:
        await send(ws, op_id, AGENTS)
    async with BerthClient(served, *keys.alice) as alice, BerthClient(served, *keys.bob) as bob:
        try:
            await until(lambda: inside["alice"] >= MAX_IN_FLIGHT)
            over_http = asyncio.create_task(alice.execute(AGENTS))  # waits for a turn too
            assert await asyncio.wait_for(bob.execute(AGENTS), WITHIN) == {"agents": []}
            assert inside["alice"] == MAX_IN_FLIGHT and not over_http.done()
        finally:
            release.set()
        assert await asyncio.wait_for(over_http, WITHIN) == {"agents": []}
    got = await answers(ws, ids)
    assert all(messages[0]["payload"] == {"data": {"agents": []}} for messages in got.values())
    assert inside["alice"] == MAX_IN_FLIGHT + 4

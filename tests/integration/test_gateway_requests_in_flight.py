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
from tests.support.gateway import Keys, client_for, gateway, keys, read_models  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio

AGENTS = "{ agents { id } }"
WITHIN = 30.0


async def until(condition: Callable[[], bool]) -> None:
    """Returns once ``condition()`` holds; fails after ``WITHIN`` seconds."""
    async with asyncio.timeout(WITHIN):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_keypair_s_burst_waits_its_turn_and_another_keypair_is_served(
    client_for: Callable[[tuple[str, str]], BerthClient], keys: Keys, monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside: Counter[str] = Counter()
    release = asyncio.Event()

    async def held_agents(pool: Any, user: tuple[str, str] | None = None) -> list[Any]:
        caller = user[1] if user else "admin"
        inside[caller] += 1
        if caller == "alice":
            await release.wait()
        return []

    monkeypatch.setattr("services.gateway.sessions.readmodels.list_agents", held_agents)
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

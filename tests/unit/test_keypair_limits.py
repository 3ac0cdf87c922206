"""``KeypairLimitsCache``: limits kept per limits epoch, loaded again only for a newer epoch; one load per
keypair and epoch; the defaults, for a short while, when a load fails."""

from __future__ import annotations

import asyncio

from contracts.tenancy import KeypairLimits
from services.gateway.keypair_limits import KeypairLimitsCache


class Loads:
    """A load of limits that counts its calls and can be held or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.rate = 100
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, access_key: str) -> KeypairLimits:
        self.calls.append(access_key)
        rate = self.rate
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise OSError("the store is away")
        return KeypairLimits(rate_limit=rate)


async def test_limits_are_loaded_again_only_at_a_newer_epoch() -> None:
    loads = Loads()
    cache = KeypairLimitsCache(loads)
    assert (await cache.get("ak", 3)).rate_limit == 100
    loads.rate = 5
    assert (await cache.get("ak", 3)).rate_limit == 100, "same epoch: nothing changed since the load"
    assert (await cache.get("ak", 2)).rate_limit == 100, "an older epoch is served by a newer load"
    assert loads.calls == ["ak"]
    assert (await cache.get("ak", 4)).rate_limit == 5, "a keypair or policy event was stored since"
    assert (await cache.get("ak", 4)).rate_limit == 5
    assert loads.calls == ["ak", "ak"]


async def test_concurrent_requests_at_one_epoch_share_one_load() -> None:
    loads = Loads()
    loads.gate = asyncio.Event()
    cache = KeypairLimitsCache(loads)
    waiting = [asyncio.ensure_future(cache.get("ak", 1)) for _ in range(5)]
    newer = asyncio.ensure_future(cache.get("ak", 2))
    await asyncio.sleep(0)
    loads.gate.set()
    assert [(await w).rate_limit for w in waiting] == [100] * 5
    await newer
    assert loads.calls == ["ak", "ak"], "one load for epoch 1, one for epoch 2"


async def test_an_older_load_that_finishes_last_does_not_replace_a_newer_one() -> None:
    loads = Loads()
    first_gate = loads.gate = asyncio.Event()
    cache = KeypairLimitsCache(loads)
    old = asyncio.ensure_future(cache.get("ak", 1))
    while not loads.calls:  # until its load has read rate 100 and waits at the gate
        await asyncio.sleep(0)
    loads.gate = None
    loads.rate = 7
    assert (await cache.get("ak", 2)).rate_limit == 7
    first_gate.set()
    assert (await old).rate_limit == 100  # its own request gets what it loaded
    assert (await cache.get("ak", 2)).rate_limit == 7, "the epoch-2 limits are kept"
    assert len(loads.calls) == 2


async def test_a_failed_load_gives_the_defaults_for_a_while_then_loads_again() -> None:
    now = [0.0]
    loads = Loads()
    loads.failing = True
    cache = KeypairLimitsCache(loads, fallback_ttl=5.0, clock=lambda: now[0])
    assert await cache.get("ak", 1) == KeypairLimits()
    assert await cache.get("ak", 1) == KeypairLimits()
    assert loads.calls == ["ak"], "the defaults stand in without a load each request"
    loads.failing = False
    now[0] = 5.5
    assert (await cache.get("ak", 1)).rate_limit == 100
    now[0] = 1e9
    assert (await cache.get("ak", 1)).rate_limit == 100, "a successful load has no expiry"
    assert loads.calls == ["ak", "ak"]


async def test_at_most_size_keypairs_are_kept() -> None:
    loads = Loads()
    cache = KeypairLimitsCache(loads, size=2)
    for key in ("a", "b", "a", "c"):
        await cache.get(key, 1)
    await cache.get("a", 1)
    await cache.get("b", 1)  # dropped as least recently used when c came
    assert loads.calls == ["a", "b", "c", "b"]

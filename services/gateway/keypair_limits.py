"""Each keypair's resource-policy limits as the gateway enforces them per request (rate limit,
subscriptions), cached for a few seconds so that a request does not load them from the event store.

A change of a policy, or of a keypair's policy, takes effect within ``LIMITS_TTL`` seconds. The cache
holds at most ``MAX_CACHED`` keypairs (least recently used dropped first); only authenticated keypairs
get here, so an attacker cannot fill it with made-up keys.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from contracts.tenancy import KeypairLimits

__all__ = ["LIMITS_TTL", "MAX_CACHED", "KeypairLimitsCache"]

LIMITS_TTL = 5.0
"""Seconds a keypair's limits are used before they are loaded again."""
MAX_CACHED = 10_000
"""Keypairs whose limits are kept at most."""


class KeypairLimitsCache:
    """``await cache.get(access_key)``: the keypair's limits, loaded by ``load`` at most once per ``ttl``
    (concurrent requests of one keypair share one load)."""

    def __init__(
        self, load: Callable[[str], Awaitable[KeypairLimits]], *, ttl: float = LIMITS_TTL, size: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, KeypairLimits]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[KeypairLimits]] = {}

    async def get(self, access_key: str) -> KeypairLimits:
        """Returns the limits of ``access_key``'s policy, at most ``ttl`` seconds old."""
        found = self._known.get(access_key)
        if found is not None and found[0] > self._clock():
            self._known.move_to_end(access_key)
            return found[1]
        loading = self._loading.get(access_key)
        if loading is None:  # one load per keypair at a time, however many of its requests wait for it
            loading = self._loading[access_key] = asyncio.ensure_future(self._load(access_key))
            loading.add_done_callback(lambda _: self._loading.pop(access_key, None))
        limits = await asyncio.shield(loading)
        self._known[access_key] = (self._clock() + self._ttl, limits)
        self._known.move_to_end(access_key)
        while len(self._known) > self._size:
            self._known.popitem(last=False)
        return limits

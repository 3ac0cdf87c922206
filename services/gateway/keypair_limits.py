"""Each keypair's resource-policy limits as the gateway enforces them per request (rate limit,
subscriptions), cached so that a request does not load them from the event store, and invalidated by
the events that change them.

An entry is kept with the limits epoch it was loaded at (``services.gateway.auth.limits_epoch``: raised
in the transaction that stores any keypair or policy event). A request carries the epoch it saw when it
was authenticated, and an entry serves it only when the entry is at least that new; else the limits are
loaded again. So a change of a policy, or of a keypair's policy, applies to every request authenticated
after the change committed, on every gateway, and an unchanged keypair is loaded once.

A load that fails (the event store away) gives the default limits, kept for ``FALLBACK_TTL`` seconds
only. The cache holds at most ``MAX_CACHED`` keypairs (least recently used dropped first); only
authenticated keypairs get here, so an attacker cannot fill it with made-up keys.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from contracts.tenancy import KeypairLimits

__all__ = ["FALLBACK_TTL", "MAX_CACHED", "KeypairLimitsCache"]

log = logging.getLogger(__name__)

FALLBACK_TTL = 5.0
"""Seconds the default limits stand in for limits that could not be loaded before a load is tried again."""
MAX_CACHED = 10_000
"""Keypairs whose limits are kept at most."""


class _Entry(NamedTuple):
    epoch: int
    limits: KeypairLimits
    until: float


class KeypairLimitsCache:
    """``await cache.get(access_key, epoch)``: the keypair's limits as of ``epoch`` or later, loaded by
    ``load`` only when no such entry is kept (concurrent requests at one epoch share one load)."""

    def __init__(
        self, load: Callable[[str], Awaitable[KeypairLimits]], *, fallback_ttl: float = FALLBACK_TTL,
        size: int = MAX_CACHED, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._fallback_ttl = fallback_ttl
        self._size = size
        self._clock = clock
        self._known: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[_Entry]] = {}

    async def get(self, access_key: str, epoch: int) -> KeypairLimits:
        """Returns the limits of ``access_key``'s policy as loaded at the limits epoch ``epoch`` or later."""
        found = self._known.get(access_key)
        if found is not None and found.epoch >= epoch and found.until > self._clock():
            self._known.move_to_end(access_key)
            return found.limits
        key = (access_key, epoch)
        loading = self._loading.get(key)
        if loading is None:  # one load per keypair and epoch, however many of its requests wait for it
            loading = self._loading[key] = asyncio.ensure_future(self._entry(access_key, epoch))
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        entry = await asyncio.shield(loading)
        self._keep(access_key, entry)
        return entry.limits

    async def _entry(self, access_key: str, epoch: int) -> _Entry:
        try:
            return _Entry(epoch, await self._load(access_key), math.inf)
        except Exception as exc:  # noqa: BLE001 - the store is away: the default limits hold meanwhile
            log.warning("limits of %s unknown (%s: %s): the defaults apply for %.0f s",
                        access_key, type(exc).__name__, exc, self._fallback_ttl)
            return _Entry(epoch, KeypairLimits(), self._clock() + self._fallback_ttl)

    def _keep(self, access_key: str, entry: _Entry) -> None:
        known = self._known.get(access_key)
        if known is None or known.epoch <= entry.epoch:  # a newer load that finished first stays
            self._known[access_key] = entry
        self._known.move_to_end(access_key)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

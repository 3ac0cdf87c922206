"""The request rate limit of each keypair: its policy's ``rate_limit`` requests per 15 minutes
(Backend.AI's keypair ``rate_limit`` and window), as a token bucket per keypair.

A bucket holds up to ``rate_limit`` requests and refills at ``rate_limit`` per window, so a
keypair may burst up to its whole window and then goes on at its average rate; a refused request
learns when the next one is allowed (``Retry-After``). Pure and in memory: one gateway process
counts what it serves. Several gateway processes behind one address each allow the full rate
(a keypair could make N times its limit across N gateways): an operator who runs several divides
the policies' limits by N, or puts a shared limiter (PostgreSQL or a proxy) in front. At most
``MAX_BUCKETS`` keypairs are tracked (least recently used dropped first: it comes back full).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["MAX_BUCKETS", "WINDOW", "RateDecision", "RateLimiter"]

WINDOW = 15 * 60.0
"""Seconds of the window a ``rate_limit`` counts requests over (Backend.AI's 15 minutes)."""
MAX_BUCKETS = 100_000
"""Keypairs tracked at most."""


class RateDecision(NamedTuple):
    """The outcome of one request: ``admitted``, requests ``remaining`` now, and ``retry_after``
    (whole seconds until the next request is admitted; 0 when admitted)."""

    admitted: bool
    limit: int
    remaining: int
    retry_after: int


class RateLimiter:
    """``take(key, limit)`` once per request; ``limit`` 0 means no limit."""

    def __init__(self, *, window: float = WINDOW, size: int = MAX_BUCKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._size = size
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key -> (tokens, when they were counted)."""

    def take(self, key: str, limit: int) -> RateDecision:
        """Counts one request of ``key`` against ``limit`` per window; returns whether it is admitted."""
        if limit <= 0:
            return RateDecision(True, 0, 0, 0)
        now = self._clock()
        rate = limit / self._window
        tokens, then = self._buckets.get(key, (float(limit), now))
        tokens = min(float(limit), tokens + (now - then) * rate)
        admitted = tokens >= 1.0
        if admitted:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
        retry_after = 0 if admitted else max(1, math.ceil((1.0 - tokens) / rate))
        return RateDecision(admitted, limit, int(tokens), retry_after)

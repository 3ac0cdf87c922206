"""The cap on concurrent subscriptions of each keypair: its policy's ``max_concurrent_subscriptions``.

Each subscription (``sessionEvents``, ``sessionStatus``, ``execute``) holds one slot of its
keypair while it runs (a JetStream consumer or a run's stream each); the slot is given back when
it ends, is stopped by the client, or its websocket closes. One over the cap is refused with
``SUBSCRIPTION_LIMIT`` before anything is opened (``services.gateway.subscription_guard``). Counted per gateway process (in memory: a
process's subscriptions end with it).
"""

from __future__ import annotations

__all__ = ["SubscriptionSlots"]


class SubscriptionSlots:
    """How many subscriptions each keypair has open."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def open_count(self, key: str) -> int:
        """Returns how many subscriptions ``key`` has open."""
        return self._open.get(key, 0)

    def acquire(self, key: str, limit: int) -> bool:
        """Takes a slot for ``key``; returns False (taking nothing) when ``limit`` (> 0) are open."""
        count = self._open.get(key, 0)
        if 0 < limit <= count:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        """Gives a slot of ``key`` back."""
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

"""Current states of aggregates, kept per process and caught up from the store on every read.

Agents, quota scopes and keypairs live for years and their histories grow with every session;
replaying a whole history on each load made each operation cost more the older the platform
was. ``StateCache.current`` keeps the last state it built per aggregate (bounded, least
recently used first out) and reads only the events after that state's version — one indexed
range read — so a load costs what changed since, not the aggregate's age. Nothing is cached
that was not read from the store, so the cache can be behind the store, never ahead of it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable, TypeVar

from contracts.envelope import Event

__all__ = ["CAPACITY", "StateCache"]

S = TypeVar("S")
Evolve = Callable[[Any, Event], Any]
ReadAfter = Callable[[str, int], Iterable[Event]]

CAPACITY = 20_000
"""States kept per process (a few KB each)."""


class StateCache:
    """Per-aggregate states built by ``evolve``, caught up on every read."""

    def __init__(self, read_after: ReadAfter, capacity: int = CAPACITY) -> None:
        self._read_after = read_after
        self._capacity = capacity
        self._states: OrderedDict[tuple[Evolve, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def current(self, aggregate_id: str, evolve: Callable[[S | None, Event], S]) -> S | None:
        """Returns the current state of ``aggregate_id`` (None when it has no events)."""
        key = (evolve, aggregate_id)
        with self._lock:
            state = self._states.get(key)
        version = state.version if state is not None else 0  # type: ignore[attr-defined]
        for event in self._read_after(aggregate_id, version):
            state = evolve(state, event)
        if state is not None:
            with self._lock:
                cached = self._states.get(key)
                if cached is None or cached.version <= state.version:  # type: ignore[attr-defined]
                    self._states[key] = state
                self._states.move_to_end(key)
                while len(self._states) > self._capacity:
                    self._states.popitem(last=False)
        return state

"""Current states of aggregates, kept per process and caught up from the store on every read.

Agents, quota scopes and keypairs live for years and their histories grow with every session;
replaying a whole history on each load made each operation cost more the older the platform
was. ``StateCache.current`` keeps the last state it built per aggregate (bounded, least
recently used first out) and reads only the events after that state's version — one indexed
range read — so a load costs what changed since, not the aggregate's age. Nothing is cached
that was not read from the store, so the cache can be behind the store, never ahead of it.

A state the cache does not hold (a process just started, or it was evicted) starts from the
aggregate's latest snapshot when a ``SnapshotStore`` is given (``services.common.snapshots``), and
a snapshot is written each time a state moved ``snapshots.EVERY`` versions past the last one: a cold
load reads at most that many events, whatever the aggregate's age.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable, Mapping, TypeVar

from contracts.envelope import Event
from services.common.snapshots import EVERY, SnapshotStore, codec_of

__all__ = ["CAPACITY", "StateCache"]

log = logging.getLogger(__name__)

S = TypeVar("S")
Evolve = Callable[[Any, Event], Any]
ReadAfter = Callable[[str, int], Iterable[Event]]
ReadNewer = Callable[[Mapping[str, int]], Iterable[Event]]

CAPACITY = 20_000
"""States kept per process (a few KB each)."""


class StateCache:
    """Per-aggregate states built by ``evolve``, caught up on every read."""

    def __init__(self, read_after: ReadAfter, capacity: int = CAPACITY, snapshots: SnapshotStore | None = None,
                 every: int = EVERY) -> None:
        self._read_after = read_after
        self._capacity = capacity
        self._snapshots = snapshots
        self._every = every
        self._states: OrderedDict[tuple[Evolve, str], tuple[Any, int]] = OrderedDict()
        """(state, version of its aggregate's latest snapshot) per (evolve, aggregate id)."""
        self._lock = threading.Lock()

    def current(self, aggregate_id: str, evolve: Callable[[S | None, Event], S], *, snapshot: bool = False) -> S | None:
        """Returns the current state of ``aggregate_id`` (None when it has no events). ``snapshot``
        is for long-lived aggregates (agents, quota scopes, keypairs): a state not cached starts
        from the latest snapshot, and snapshots are written as it grows; short-lived ones (a
        session's few events) skip the snapshot read."""
        key = (evolve, aggregate_id)
        snapshots = self._snapshots if snapshot else None
        with self._lock:
            state, snapshotted = self._states.get(key, (None, 0))
        if state is None:
            state, snapshotted, events = self._from_snapshot(aggregate_id, evolve, snapshots)
        else:
            events = self._read_after(aggregate_id, state.version)  # type: ignore[attr-defined]
        for event in events:
            state = evolve(state, event)
        return self._keep(key, state, snapshotted, snapshots)

    def peek(self, aggregate_id: str, evolve: Callable[[S | None, Event], S]) -> S | None:
        """Returns the cached state of ``aggregate_id`` as it is (possibly behind the store), None
        when none is cached; reads nothing. For guesses that a later read confirms."""
        with self._lock:
            entry = self._states.get((evolve, aggregate_id))
        return entry[0] if entry is not None else None

    def current_many(self, aggregate_ids: Iterable[str], evolve: Callable[[S | None, Event], S],
                     read_newer: ReadNewer, *, snapshot: bool = False) -> dict[str, S | None]:
        """``current`` of several aggregates, with ONE read (``read_newer``: the events after each
        given version, in store order) for all those already cached and, without ``snapshot``, for
        those not cached too (from version 0: a session's few events); the others (a long-lived
        aggregate not cached starts from its snapshot) are read one by one."""
        snapshots = self._snapshots if snapshot else None
        ids = list(dict.fromkeys(aggregate_ids))
        with self._lock:
            start = {i: self._states[(evolve, i)] for i in ids if (evolve, i) in self._states}
        if snapshots is None:
            start |= {i: (None, 0) for i in ids if i not in start}
        found: dict[str, Any] = {i: self.current(i, evolve, snapshot=snapshot) for i in ids if i not in start}
        known = {i: state.version if state is not None else 0 for i, (state, _) in start.items()}
        newer: dict[str, list[Event]] = {}
        for event in read_newer(known) if known else ():
            newer.setdefault(event.originator_id, []).append(event)
        for aggregate_id, (state, snapshotted) in start.items():
            for event in newer.get(aggregate_id, ()):
                state = evolve(state, event)
            found[aggregate_id] = self._keep((evolve, aggregate_id), state, snapshotted, snapshots)
        return {i: found[i] for i in ids}

    def _keep(self, key: tuple[Evolve, str], state: Any, snapshotted: int, snapshots: SnapshotStore | None) -> Any:
        """Caches ``state`` (unless a newer one is cached), first snapshotting it when it moved
        ``every`` versions past its last snapshot; returns it."""
        if state is None:
            return None
        if snapshots is not None and state.version - snapshotted >= self._every:
            snapshotted = self._snapshot(snapshots, key[1], key[0], state, snapshotted)
        with self._lock:
            cached = self._states.get(key)
            if cached is None or cached[0].version <= state.version:
                self._states[key] = (state, max(snapshotted, cached[1] if cached else 0))
            self._states.move_to_end(key)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)
        return state

    def _from_snapshot(self, aggregate_id: str, evolve: Evolve,
                       snapshots: SnapshotStore | None) -> tuple[Any, int, Iterable[Event]]:
        """Returns the latest snapshot's state (or None), its version and the events to apply after it.

        The events are read from the snapshot's own version on, in the same read, to check that the
        store still holds the event the snapshot ends with: a snapshot of a history the store no
        longer has (a database restored from an older backup, say) is ignored."""
        if snapshots is None:
            return None, 0, self._read_after(aggregate_id, 0)
        codec = codec_of(evolve)
        snapshot = snapshots.get_snapshot(aggregate_id, codec.kind)
        state = codec.decode(snapshot) if snapshot is not None else None
        if state is None:
            return None, 0, self._read_after(aggregate_id, 0)
        events = list(self._read_after(aggregate_id, state.version - 1))
        if not events or events[0].originator_version != state.version:
            log.warning("ignoring the snapshot of %s at version %d: the store does not hold that version",
                        aggregate_id, state.version)
            return None, 0, self._read_after(aggregate_id, 0)
        return state, state.version, events[1:]

    def _snapshot(self, snapshots: SnapshotStore, aggregate_id: str, evolve: Evolve, state: Any, snapshotted: int) -> int:
        """Writes a snapshot of ``state``; returns the version now snapshotted (a failed write is
        only logged: the next load reads the events instead)."""
        codec = codec_of(evolve)
        snapshot = codec.encode(state)
        if snapshot is None:
            return snapshotted
        try:
            snapshots.put_snapshot(aggregate_id, codec.kind, snapshot)
        except Exception:  # noqa: BLE001 - a snapshot is an optimisation; the history stays the truth
            log.warning("could not write the snapshot of %s at version %d", aggregate_id, state.version, exc_info=True)
            return snapshotted
        return int(state.version)

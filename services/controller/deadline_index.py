"""The earliest deadlines among many sessions, without looking at every session.

``DeadlineIndex`` keeps each session's current deadline in a dict and in a heap with lazy
deletion: setting or forgetting a deadline costs O(log n), the earliest one O(1) amortised,
and the due ones O(k log n) for k due sessions. ``Deadlines`` and ``StuckDeadlines`` used to
recompute every live session's deadline twice at each event they learnt (``due`` and
``next_deadline``): with 2,000 sessions running that was 58 % and 40 % of the controller's
CPU under ``bench_api.py`` load, a cost that grew with the number of live sessions.
"""

from __future__ import annotations

import datetime as dt
import heapq

__all__ = ["DeadlineIndex"]

_SLACK = 64
"""Stale heap entries tolerated beyond the live ones before the heap is rebuilt."""


class DeadlineIndex:
    """session id -> its deadline; the earliest and the due ones without a full scan."""

    def __init__(self) -> None:
        self._current: dict[str, dt.datetime] = {}
        self._heap: list[tuple[dt.datetime, str]] = []

    def __len__(self) -> int:
        return len(self._current)

    def set(self, session_id: str, when: dt.datetime | None) -> None:
        """Makes ``when`` the deadline of ``session_id`` (None: it has none)."""
        if when is None:
            self._current.pop(session_id, None)
            return
        if self._current.get(session_id) == when:
            return
        self._current[session_id] = when
        heapq.heappush(self._heap, (when, session_id))
        if len(self._heap) > 2 * len(self._current) + _SLACK:
            self._heap = [(when, key) for key, when in self._current.items()]
            heapq.heapify(self._heap)

    def discard(self, session_id: str) -> None:
        """Forgets the deadline of ``session_id``."""
        self._current.pop(session_id, None)

    def earliest(self) -> dt.datetime | None:
        """Returns the earliest deadline, None when there is none."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now: dt.datetime) -> list[str]:
        """Returns the sessions whose deadline is at or before ``now``, by session id; they keep
        their deadline until it is set again or discarded."""
        found: dict[str, dt.datetime] = {}
        self._drop_stale()
        while self._heap and self._heap[0][0] <= now:
            when, session_id = heapq.heappop(self._heap)
            if self._current.get(session_id) == when:
                found[session_id] = when  # a deadline set back to an earlier value has two entries: one kept
            self._drop_stale()
        for session_id, when in found.items():
            heapq.heappush(self._heap, (when, session_id))
        return sorted(found)

    def _drop_stale(self) -> None:
        heap, current = self._heap, self._current
        while heap and current.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

"""The order in which one resource group's pending sessions are considered.

Sessions go by priority, highest first. Within a priority band the group's
``scheduler`` decides:

- ``fifo``: oldest request first (``requested_at``, then ``session_id``);
- ``lifo``: newest request first (both keys descending);
- ``drf``: the session of the keypair with the lowest dominant share first, where the
  dominant share is the maximum over slots of the keypair's usage (what this pass
  placed included) divided by the capacity of the group's alive agents for that
  slot; ties by ``requested_at``, then ``session_id``. Shares are recomputed as the
  pass places sessions: the order is produced lazily, one session at a time.

DRF shares are compared exactly: with ``L`` the least common multiple of the group's
slot capacities, ``share * L = max(usage_s * (L // capacity_s))`` is an integer.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from itertools import groupby
from typing import Callable, Iterator, Sequence

from contracts.tenancy import SchedulerPolicy
from domain.scheduling.model import PendingSession

__all__ = ["drf_weights", "sequence"]

Share = Callable[[str], int]


def drf_weights(totals: Sequence[int]) -> list[int]:
    """Returns per slot ``L // capacity`` (0 for slots the group has none of)."""
    sized = [t for t in totals if t > 0]
    if not sized:
        return [0] * len(totals)
    common = math.lcm(*sized)
    return [common // t if t > 0 else 0 for t in totals]


def _fifo_key(session: PendingSession) -> tuple:
    return (session.requested_at, session.session_id)


def sequence(sessions: Sequence[PendingSession], policy: SchedulerPolicy, share: Share) -> Iterator[PendingSession]:
    """Yields ``sessions`` in scheduling order; ``share(owner)`` is read lazily (DRF only)."""
    by_priority = sorted(sessions, key=lambda s: -s.priority)
    for _, band in groupby(by_priority, key=lambda s: s.priority):
        members = list(band)
        if policy is SchedulerPolicy.DRF:
            yield from _drf(members, share)
        elif policy is SchedulerPolicy.LIFO:
            yield from sorted(members, key=_fifo_key, reverse=True)
        else:
            yield from sorted(members, key=_fifo_key)


def _drf(band: list[PendingSession], share: Share) -> Iterator[PendingSession]:
    queues: dict[str, deque[PendingSession]] = {}
    for session in sorted(band, key=_fifo_key):
        queues.setdefault(session.owner, deque()).append(session)
    heap = [(share(owner), *_fifo_key(queue[0]), owner) for owner, queue in queues.items()]
    heapq.heapify(heap)
    while heap:
        owner = heapq.heappop(heap)[-1]
        queue = queues[owner]
        yield queue.popleft()
        # Only the owner just served may have been charged: the others' shares still hold.
        if queue:
            heapq.heappush(heap, (share(owner), *_fifo_key(queue[0]), owner))

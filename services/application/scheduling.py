"""The scheduler's access to the event store: record a pass, catch up after a conflict.

A pass is recorded in **one** transaction. Every event carries the version the
snapshot knew, so if any aggregate moved on meanwhile (a session cancelled, a kernel
released, quota released) the whole transaction is refused with ``ConcurrencyError``;
the scheduler then reads only the events it missed on those aggregates (``newer_than``),
decides the same plan again and records what still holds.
"""

from __future__ import annotations

from typing import Sequence

from contracts.envelope import Event
from services.application.long_lived import LONG_LIVED
from services.common.store import BerthApplication

__all__ = ["Scheduling"]


class Scheduling(BerthApplication):
    """Records scheduling passes and reads what a stale snapshot missed."""

    long_lived = LONG_LIVED

    def record_pass(self, events: Sequence[Event]) -> int | None:
        """Records all ``events`` atomically; returns the position of the last one.

        Raises ``ConcurrencyError`` when any aggregate moved on since the snapshot saw it.
        """
        return self.record(events)

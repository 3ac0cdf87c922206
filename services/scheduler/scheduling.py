"""The scheduler's access to the event store: record a pass, reload aggregates.

A pass is recorded in **one** transaction. Every event carries the version the
snapshot knew, so if any aggregate moved on meanwhile (a session cancelled, a kernel
released, quota released) the whole pass is refused with ``ConcurrencyError``; the
scheduler then reloads those aggregates and plans again.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from contracts.envelope import Event
from services.common.store import BerthApplication

__all__ = ["Scheduling"]


class Scheduling(BerthApplication):
    """Records scheduling passes and reloads aggregates after a conflict."""

    def record_pass(self, events: Sequence[Event]) -> int | None:
        """Records all ``events`` atomically; returns the position of the last one.

        Raises ``ConcurrencyError`` when any aggregate moved on since the snapshot saw it.
        """
        return self.record(events)

    def histories(self, aggregate_ids: Iterable[str]) -> list[Event]:
        """Returns the full histories of ``aggregate_ids``, each oldest first, one after the other."""
        events: list[Event] = []
        for aggregate_id in sorted(aggregate_ids):
            events += self.load(aggregate_id)
        return events

"""``CountsReads``: mixed into an application of the event store, it records what each load reads
(the tests that a cold load reads a bounded number of events, whatever the aggregate's age)."""

from __future__ import annotations

from typing import Any

from contracts.envelope import Event

__all__ = ["CountsReads"]


class CountsReads:
    """Records ``(aggregate, after version, events read)`` for every read of the store in ``reads``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reads: list[tuple[str, int, int]] = []
        super().__init__(*args, **kwargs)

    def _read_after(self, aggregate_id: str, version: int) -> list[Event]:
        events = super()._read_after(aggregate_id, version)  # type: ignore[misc]
        self.reads.append((aggregate_id, version, len(events)))
        return events

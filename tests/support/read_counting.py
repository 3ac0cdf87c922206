"""``CountsReads``: mixed into an application of the event store, it records what each load reads
(the tests that a cold load reads a bounded number of events, whatever the aggregate's age)."""

from __future__ import annotations

from typing import Any, Mapping

from contracts.envelope import Event

__all__ = ["CountsReads"]


class CountsReads:
    """Records ``(aggregate, after version, events read)`` for every read of one aggregate in ``reads``,
    and the aggregates of every read of several at once (``newer_than``) in ``reads_together``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reads: list[tuple[str, int, int]] = []
        self.reads_together: list[set[str]] = []
        super().__init__(*args, **kwargs)

    def newer_than(self, known: Mapping[str, int]) -> list[Event]:
        self.reads_together.append(set(known))
        return super().newer_than(known)  # type: ignore[misc, no-any-return]

    def _read_after(self, aggregate_id: str, version: int) -> list[Event]:
        events = super()._read_after(aggregate_id, version)  # type: ignore[misc]
        self.reads.append((aggregate_id, version, len(events)))
        return events

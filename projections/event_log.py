"""Read model ``event_log``: every event, for audit queries and dashboards."""

from __future__ import annotations

import msgspec

from contracts.envelope import context_of
from projections.delivery import Entry
from projections.writer import Writer, bulk_insert

__all__ = ["project"]

_insert = bulk_insert(
    "event_log",
    [
        ("position", "bigint"),
        ("stream_seq", "bigint"),
        ("event_id", "uuid"),
        ("type", "text"),
        ("context", "text"),
        ("aggregate_id", "text"),
        ("aggregate_version", "integer"),
        ("occurred_at", "timestamptz"),
        ("actor", "text"),
        ("correlation_id", "text"),
        ("causation_id", "text"),
        ("payload", "json"),
    ],
)


def project(w: Writer, entry: Entry) -> None:
    """Appends ``entry`` to the event log, whatever its type (one insert per batch: no other
    statement reads or changes the log while a batch is applied)."""
    head = entry.envelope
    row = (
        entry.position,
        entry.stream_seq,
        head.event_id,
        entry.type_name,
        context_of(entry.type_name),
        head.originator_id,
        head.originator_version,
        head.timestamp,
        head.metadata.actor,
        head.metadata.correlation_id,
        head.metadata.causation_id,
        msgspec.Raw(entry.payload),
    )
    w.defer(_insert, row, ordered=False)

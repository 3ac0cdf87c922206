"""Read model ``event_log``: every event, for audit queries and dashboards."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.envelope import context_of
from projections.delivery import Entry
from projections.writer import Writer, bulk_insert

__all__ = ["INSERT", "project", "row"]

INSERT = bulk_insert(
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
"""The log's insert: ``project`` defers its rows, a bulk batch copies them beside its projecting (``runner``)."""


def project(w: Writer, entry: Entry) -> None:
    """Appends ``entry`` to the event log, whatever its type (one insert per batch: no other
    statement reads or changes the log while a batch is applied)."""
    w.defer(INSERT, row(entry), ordered=False)


def row(entry: Entry) -> tuple[Any, ...]:
    """Returns the log's row of ``entry`` (``INSERT``'s columns): the entry's alone, whatever the batch holds."""
    head = entry.envelope
    return (
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

"""Read model ``quota_usage``: what each quota scope (keypair, project, domain) holds.

One row per Quota aggregate. ``sessions`` maps each holding session to its slots, so a
release subtracts exactly what the consumption added; ``slots`` is their sum and
``session_count`` their number, as in the aggregate. A scope whose sessions all
released keeps its row, with nothing held.
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch

import msgspec

from contracts import quota as ev
from contracts.envelope import Event
from projections.delivery import Entry
from projections.errors import MissingRowError
from projections.values import json_text, total_slots
from projections.writer import Writer

__all__ = ["project"]

_sessions = msgspec.json.Decoder(dict[str, dict[str, Decimal]])


def project(w: Writer, entry: Entry) -> None:
    """Applies ``entry`` to the quota_usage table (events of other aggregates change nothing)."""
    if entry.event is not None:
        _apply(entry.event, w, entry)


@singledispatch
def _apply(event: Event, w: Writer, entry: Entry) -> None:
    """Ignores events that do not concern quotas."""


@_apply.register
def _(event: ev.QuotaConsumed, w: Writer, entry: Entry) -> None:
    sessions = _read_sessions(w, event) or {}
    sessions.update((session_id, dict(slots)) for session_id, slots in event.allocations.items())
    _write(w, event, sessions)


@_apply.register
def _(event: ev.QuotaReleased, w: Writer, entry: Entry) -> None:
    sessions = _read_sessions(w, event)
    if sessions is None:
        raise MissingRowError(f"no quota {event.originator_id} for {type(event).type_name()}")
    sessions.pop(event.session_id, None)
    _write(w, event, sessions)


def _read_sessions(w: Writer, event: Event) -> dict[str, dict[str, Decimal]] | None:
    row = w.fetchone("SELECT sessions::text FROM quota_usage WHERE quota_id = %s", (event.originator_id,))
    return None if row is None else _sessions.decode(row[0])


def _write(w: Writer, event: ev.QuotaConsumed | ev.QuotaReleased, sessions: dict[str, dict[str, Decimal]]) -> None:
    w.execute(
        """
        INSERT INTO quota_usage (quota_id, scope, name, slots, sessions, session_count, updated_at, version)
        VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s)
        ON CONFLICT (quota_id) DO UPDATE
           SET slots = EXCLUDED.slots, sessions = EXCLUDED.sessions, session_count = EXCLUDED.session_count,
               updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
        """,
        (
            event.originator_id,
            ev.QuotaScope(event.scope).value,
            event.name,
            json_text(total_slots(sessions.values())),
            json_text(dict(sorted(sessions.items()))),
            len(sessions),
            event.timestamp,
            event.originator_version,
        ),
    )

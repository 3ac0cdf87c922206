"""Read model ``quota_usage``: what each quota scope (keypair, project, domain) holds.

One row per Quota aggregate. ``sessions`` maps each holding session to its slots, so a
release subtracts exactly what the consumption added; ``slots`` is their sum and
``session_count`` their number, as in the aggregate. A scope whose sessions all
released keeps its row, with nothing held. Within a batch, each scope's row is read once and
written once (``projections.tallies``).
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch
from typing import Hashable

import msgspec

from contracts import quota as ev
from contracts.envelope import Event
from projections.delivery import Entry
from projections.errors import MissingRowError
from projections.tallies import Held, Tally
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
    held = w.tally(SESSIONS, event.originator_id) or Held({}, 0, None)
    held.entries.update((session_id, dict(slots)) for session_id, slots in event.allocations.items())
    _changed(w, event, held)


@_apply.register
def _(event: ev.QuotaReleased, w: Writer, entry: Entry) -> None:
    held = w.tally(SESSIONS, event.originator_id)
    if held is None:
        raise MissingRowError(f"no quota {event.originator_id} for {type(event).type_name()}")
    held.entries.pop(event.session_id, None)
    _changed(w, event, held)


def _changed(w: Writer, event: ev.QuotaConsumed | ev.QuotaReleased, held: Held) -> None:
    held.version, held.updated_at = event.originator_version, event.timestamp
    held.extra = (ev.QuotaScope(event.scope).value, event.name)
    w.put_tally(SESSIONS, event.originator_id, held)


def _load(w: Writer, quota_id: Hashable) -> Held | None:
    row = w.fetchone("SELECT sessions::text, version, updated_at, scope, name FROM quota_usage WHERE quota_id = %s",
                     (quota_id,))
    return None if row is None else Held(_sessions.decode(row[0]), row[1], row[2], (row[3], row[4]))


def _store(w: Writer, quota_id: Hashable, held: Held) -> None:
    scope, name = held.extra
    w.execute(
        """
        INSERT INTO quota_usage (quota_id, scope, name, slots, sessions, session_count, updated_at, version)
        VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s)
        ON CONFLICT (quota_id) DO UPDATE
           SET slots = EXCLUDED.slots, sessions = EXCLUDED.sessions, session_count = EXCLUDED.session_count,
               updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
        """,
        (
            quota_id,
            scope,
            name,
            json_text(total_slots(held.entries.values())),
            json_text(dict(sorted(held.entries.items()))),
            len(held.entries),
            held.updated_at,
            held.version,
        ),
    )


SESSIONS = Tally("quota_usage.sessions", _load, _store)
"""Each quota scope's holding sessions, tallied per batch (``projections.tallies``)."""

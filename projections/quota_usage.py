"""Read models ``quota_usage`` and ``quota_usage_sessions``: what each quota scope (keypair, project,
domain) holds.

One ``quota_usage`` row per Quota aggregate: ``slots``, the sum of its holding sessions' slots, and
``session_count``, their number, as in the aggregate; one ``quota_usage_sessions`` row per holding
session with its slots. A consumption adds its sessions' rows and their slots to the sum; a release
deletes the session's row and subtracts the slots it carries (what the consumption added: the
aggregate releases exactly what the session holds). So a change costs the same whether the scope
holds one session or a domain's thousands: neither map nor sum is read or written whole. A scope
whose sessions all released keeps its row, with nothing held. Within a batch, each scope's row is
read once and written once (``projections.tallies``).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from functools import singledispatch
from typing import Hashable, Mapping

import msgspec

from contracts import quota as ev
from contracts.envelope import Event
from contracts.slots import WIDE_PRECISION, add_slots, subtract_slots
from projections.delivery import Entry
from projections.errors import MissingRowError
from projections.tallies import Held, Tally
from projections.values import json_text
from projections.writer import Writer, bulk_insert

__all__ = ["apply_event", "preload"]

_slots = msgspec.json.Decoder(dict[str, Decimal])
_holding = bulk_insert("quota_usage_sessions", [("quota_id", "text"), ("session_id", "text"), ("slots", "jsonb")])
"""A session's row in a scope: deferred (one statement per batch, or the batch's COPY), held in bulk, so a
release in the same batch drops it before it is written (``Writer.discard``)."""


@singledispatch
def apply_event(event: Event, w: Writer, entry: Entry) -> None:
    """Applies ``event`` (of ``entry``) to the quota usage tables, by its type; this default, for events that do not
    concern quotas, changes nothing (``runner.handlers`` leaves it out)."""


@apply_event.register
def _(event: ev.QuotaConsumed, w: Writer, entry: Entry) -> None:
    held = w.tallies.get(SUM, event.originator_id) or Held({}, 0, None)
    for session_id, slots in event.allocations.items():
        w.defer(_holding, (event.originator_id, session_id, dict(slots)), key=(event.originator_id, session_id))
        held.total = _canonical(add_slots(held.total, slots))
    held.count += len(event.allocations)
    _changed(w, event, held)


@apply_event.register
def _(event: ev.QuotaReleased, w: Writer, entry: Entry) -> None:
    held = w.tallies.get(SUM, event.originator_id)
    if held is None:
        raise MissingRowError(f"no quota {event.originator_id} for {type(event).type_name()}")
    if not w.discard(_holding, (event.originator_id, event.session_id)):
        w.execute("DELETE FROM quota_usage_sessions WHERE quota_id = %s AND session_id = %s",
                  (event.originator_id, event.session_id))
    held.total = _canonical(subtract_slots(held.total, event.slots))
    held.count -= 1
    _changed(w, event, held)


def _canonical(slots: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """The non-zero amounts, each written the shortest way (a sum after a subtraction reads as the
    sum of what is left: 3.5 - 1.5 is 2, not 2.0)."""
    with localcontext(prec=WIDE_PRECISION):  # histories from before the slots' bounds may hold 80 digits
        return {name: amount.quantize(Decimal(1)) if amount == amount.to_integral_value() else amount.normalize()
                for name, amount in slots.items() if amount != 0}


def _changed(w: Writer, event: ev.QuotaConsumed | ev.QuotaReleased, held: Held) -> None:
    held.version, held.updated_at = event.originator_version, event.timestamp
    held.extra = (ev.QuotaScope(event.scope).value, event.name)
    w.tallies.put(SUM, event.originator_id, held)


def _load(w: Writer, quota_id: Hashable) -> Held | None:
    row = w.fetchone("SELECT slots::text, session_count, version, updated_at, scope, name FROM quota_usage"
                     " WHERE quota_id = %s", (quota_id,))
    if row is None:
        return None
    return Held({}, row[2], row[3], (row[4], row[5]), total=_slots.decode(row[0]), count=row[1])


def _load_many(w: Writer, quota_ids: list[Hashable]) -> dict[Hashable, Held]:
    rows = w.fetchall("SELECT quota_id, slots::text, session_count, version, updated_at, scope, name FROM quota_usage"
                      " WHERE quota_id = ANY(%s)", (quota_ids,))
    return {row[0]: Held({}, row[3], row[4], (row[5], row[6]), total=_slots.decode(row[1]), count=row[2])
            for row in rows}


def preload(w: Writer, events: Mapping[type, list[Event]]) -> None:
    """Has a bulk batch read the sum of every quota scope its ``events`` (by type) consume or release
    with one statement (``Tallies.preload``)."""
    w.tallies.preload(SUM, {event.originator_id for kind in (ev.QuotaConsumed, ev.QuotaReleased)
                            for event in events.get(kind, ())})


def _store(w: Writer, quota_id: Hashable, held: Held) -> None:
    scope, name = held.extra
    w.execute(
        """
        INSERT INTO quota_usage (quota_id, scope, name, slots, session_count, updated_at, version)
        VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s)
        ON CONFLICT (quota_id) DO UPDATE
           SET slots = EXCLUDED.slots, session_count = EXCLUDED.session_count,
               updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
        """,
        (quota_id, scope, name, json_text(dict(sorted(held.total.items()))), held.count, held.updated_at, held.version),
    )


SUM = Tally("quota_usage", _load, _store, _load_many)
"""Each quota scope's sum and session count, tallied per batch (``projections.tallies``)."""

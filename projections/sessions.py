"""Read model ``sessions``: one row per session, its status and status history.

The status comes only from events, as ``projections.session_status`` derives it:
``session.requested`` gives PENDING, ``session.scheduled`` SCHEDULED,
``session.status_changed`` any later status. Every
event of the session aggregate moves ``version``, ``updated_at`` and ``last_position``.
``status_detail`` (for people) is the last ``session.kernel_progressed`` detail while the
session prepares, and each status change's own detail (the cause of a failed start), so a
new status clears what no longer applies.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Mapping

from contracts import session as ev
from contracts.envelope import Event
from contracts.slots import sum_slots
from contracts.status import SessionStatus
from projections.delivery import Entry
from projections.session_status import StatusChange, status_change
from projections.values import iso, json_text
from projections.writer import Writer, bulk_insert

__all__ = ["apply_event", "preload"]

_insert = bulk_insert(
    "sessions",
    [
        ("session_id", "text"),
        ("name", "text"),
        ("owner", "text"),
        ("image", "text"),
        ("session_type", "text"),
        ("status", "text"),
        ("requested_slots", "jsonb"),
        ("cluster_size", "integer"),
        ("status_history", "jsonb"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("version", "integer"),
        ("last_position", "bigint"),
        ("user_name", "text"),
        ("domain", "text"),
        ("project", "text"),
        ("resource_group", "text"),
        ("priority", "integer"),
        ("mounts", "jsonb"),
        ("status_reason", "text"),
        ("agent_ids", "text[]"),
        ("terminated_at", "timestamptz"),
        ("pending_code", "text"),
        ("pending_reason", "text"),
        ("status_detail", "text"),
    ],
    key="session_id",
)
"""Every column: a row held in memory (a bulk batch, ``Writer.held``) is written whole."""
_ENDED = frozenset({SessionStatus.TERMINATED, SessionStatus.CANCELLED, SessionStatus.ERROR})


def preload(w: Writer, events: Mapping[type, list[Event]]) -> None:
    """Has a bulk batch hold the rows of the sessions its ``events`` (by type) change but do not
    create (``Writer.preload``): they are changed in memory, as the rows it inserts are."""
    created = {event.originator_id for event in events.get(ev.SessionRequested, ())}
    changed = {event.originator_id for kind in _CHANGES for event in events.get(kind, ())}
    w.preload(_insert, changed - created)


@singledispatch
def apply_event(event: Event, w: Writer, entry: Entry) -> None:
    """Applies ``event`` (of ``entry``) to the sessions table, by its type; this default, for events that do not
    concern sessions, changes nothing (``runner.handlers`` leaves it out)."""


@apply_event.register
def _(event: ev.SessionRequested, w: Writer, entry: Entry) -> None:
    spec = event.spec
    row = (
        event.originator_id,
        spec.name,
        event.owner,
        spec.image,
        spec.session_type.value,
        SessionStatus.PENDING.value,
        sum_slots(k.slots for k in spec.kernels),
        len(spec.kernels),
        {SessionStatus.PENDING.value: iso(event.timestamp)},
        event.timestamp,
        event.timestamp,
        event.originator_version,
        entry.position,
        spec.user,
        spec.domain,
        spec.project,
        spec.resource_group,
        spec.priority,
        spec.mounts,
        None,
        [],
        None,
        None,
        None,
        None,
    )
    w.defer(_insert, row, key=event.originator_id)


@apply_event.register
def _(event: ev.SessionScheduled, w: Writer, entry: Entry) -> None:
    agent_ids = sorted({p.agent_id for p in event.placements})
    _change_status(w, event, entry, status_change(event), agent_ids=agent_ids)


@apply_event.register
def _(event: ev.SessionStatusChanged, w: Writer, entry: Entry) -> None:
    _change_status(w, event, entry, status_change(event))


@apply_event.register
def _(event: ev.KernelProgressed, w: Writer, entry: Entry) -> None:
    _set(w, event, entry, status_detail=status_change(event).detail)


@apply_event.register
def _(event: ev.SessionPendingReasonChanged, w: Writer, entry: Entry) -> None:
    _set(w, event, entry, pending_code=event.code, pending_reason=event.message)


@apply_event.register(ev.KernelPreparing)
@apply_event.register(ev.KernelCreating)
@apply_event.register(ev.KernelStarted)
@apply_event.register(ev.KernelTerminated)
def _(event: Event, w: Writer, entry: Entry) -> None:
    _set(w, event, entry)


def _set(w: Writer, event: Event, entry: Entry, **values: object) -> None:
    """Sets ``values`` (columns of this module's code, never of input) and the event's version, time and
    position on the session's row: in memory when the batch holds it, else with one statement."""
    values.update(version=event.originator_version, updated_at=event.timestamp, last_position=entry.position)
    row = w.held(_insert, event.originator_id)
    if row is not None:
        row.update(values)
        return
    assignments = ", ".join(f"{name} = %s" for name in values)
    w.execute_one(f"UPDATE sessions SET {assignments} WHERE session_id = %s", (*values.values(), event.originator_id),
                  _missing(event))


def _change_status(
    w: Writer, event: Event, entry: Entry, change: StatusChange, *, agent_ids: list[str] | None = None
) -> None:
    status, reason, detail = change.status, change.reason, change.detail
    assert status is not None and reason is not None
    row = w.held(_insert, event.originator_id)
    if row is not None:  # as the statement below changes it
        row.update(status=status.value, status_reason=reason.value, status_detail=detail, pending_code=None,
                   pending_reason=None, status_history={**row["status_history"], status.value: iso(event.timestamp)},
                   updated_at=event.timestamp, version=event.originator_version, last_position=entry.position)
        if agent_ids is not None:
            row["agent_ids"] = agent_ids
        if status in _ENDED:
            row["terminated_at"] = event.timestamp
        return
    w.execute_one(
        """
        UPDATE sessions
           SET status = %s,
               status_reason = %s,
               status_detail = %s,
               pending_code = NULL,
               pending_reason = NULL,
               status_history = status_history || %s::jsonb,
               agent_ids = COALESCE(%s, agent_ids),
               terminated_at = CASE WHEN %s THEN %s ELSE terminated_at END,
               updated_at = %s,
               version = %s,
               last_position = %s
         WHERE session_id = %s
        """,
        (
            status.value,
            reason.value,
            detail,
            json_text({status.value: iso(event.timestamp)}),
            agent_ids,
            status in _ENDED,
            event.timestamp,
            event.timestamp,
            event.originator_version,
            entry.position,
            event.originator_id,
        ),
        _missing(event),
    )


def _missing(event: Event) -> str:
    return f"no session {event.originator_id} for {type(event).type_name()}"


_CHANGES = tuple(kind for kind in apply_event.registry if kind not in (object, ev.SessionRequested))
"""The events that change a session's row (each of the session's own aggregate)."""

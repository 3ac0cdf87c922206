"""Read model ``agents``: capacity, occupied slots, assigned kernels and liveness of each agent.

``allocations`` keeps the slots of each assigned kernel (kernel id -> slots), so a
release subtracts exactly what the assignment added; ``occupied`` is their sum and
``kernel_count`` their number, as in the Agent aggregate. Within a batch, each agent's
allocations are read once and written once (``projections.tallies``).
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch
from typing import Hashable, Mapping

import msgspec

from contracts import agent as ev
from contracts.envelope import Event
from contracts.slots import sum_slots
from contracts.status import AgentStatus
from projections.delivery import Entry
from projections.errors import MissingRowError
from projections.tallies import Held, Tally
from projections.values import json_text
from projections.writer import Writer

__all__ = ["apply_event", "preload"]

_allocations = msgspec.json.Decoder(dict[str, dict[str, Decimal]])


@singledispatch
def apply_event(event: Event, w: Writer, entry: Entry) -> None:
    """Applies ``event`` (of ``entry``) to the agents table, by its type; this default, for events that do not
    concern agents, changes nothing (``runner.handlers`` leaves it out)."""


@apply_event.register
def _(event: ev.AgentRegistered, w: Writer, entry: Entry) -> None:
    w.execute(
        """
        INSERT INTO agents (agent_id, hostname, backend, resource_group, status, capacity, occupied, kernel_count,
                            allocations, registered_at, updated_at, version)
        VALUES (%s, %s, %s, %s, %s, %s::jsonb, '{}'::jsonb, 0, '{}'::jsonb, %s, %s, %s)
        """,
        (
            event.originator_id,
            event.hostname,
            event.backend,
            event.resource_group,
            AgentStatus.ALIVE.value,
            json_text(event.capacity),
            event.timestamp,
            event.timestamp,
            event.originator_version,
        ),
    )


@apply_event.register
def _(event: ev.AgentCapacityChanged, w: Writer, entry: Entry) -> None:
    _update(w, event, "capacity = %s::jsonb", json_text(event.capacity))


@apply_event.register
def _(event: ev.KernelAssigned, w: Writer, entry: Entry) -> None:
    held = _held(w, event)
    held.entries[event.kernel_id] = dict(event.slots)
    _changed(w, event, held)


@apply_event.register
def _(event: ev.KernelReleased, w: Writer, entry: Entry) -> None:
    held = _held(w, event)
    held.entries.pop(event.kernel_id, None)
    _changed(w, event, held)


@apply_event.register
def _(event: ev.KernelTerminationRequested, w: Writer, entry: Entry) -> None:
    _update(w, event, None)


@apply_event.register
def _(event: ev.AgentLost, w: Writer, entry: Entry) -> None:
    _update(w, event, "status = %s", AgentStatus.LOST.value)


@apply_event.register
def _(event: ev.AgentRecovered, w: Writer, entry: Entry) -> None:
    _update(w, event, "status = %s", AgentStatus.ALIVE.value)


@apply_event.register
def _(event: ev.OrphanContainerDestroyed, w: Writer, entry: Entry) -> None:
    _update(w, event, None)


def _held(w: Writer, event: Event) -> Held:
    held = w.tallies.get(ALLOCATIONS, event.originator_id)
    if held is None:
        raise MissingRowError(_missing(event))
    return held


def _changed(w: Writer, event: Event, held: Held) -> None:
    held.version, held.updated_at = event.originator_version, event.timestamp
    w.tallies.put(ALLOCATIONS, event.originator_id, held)


def _load(w: Writer, agent_id: Hashable) -> Held | None:
    row = w.fetchone("SELECT allocations::text, version, updated_at FROM agents WHERE agent_id = %s", (agent_id,))
    return None if row is None else Held(_allocations.decode(row[0]), row[1], row[2])


def _load_many(w: Writer, agent_ids: list[Hashable]) -> dict[Hashable, Held]:
    rows = w.fetchall("SELECT agent_id, allocations::text, version, updated_at FROM agents WHERE agent_id = ANY(%s)",
                      (agent_ids,))
    return {row[0]: Held(_allocations.decode(row[1]), row[2], row[3]) for row in rows}


def preload(w: Writer, events: Mapping[type, list[Event]]) -> None:
    """Has a bulk batch read the allocations of every agent its ``events`` (by type) assign to or release
    from with one statement (``Tallies.preload``)."""
    w.tallies.preload(ALLOCATIONS, {event.originator_id for kind in (ev.KernelAssigned, ev.KernelReleased)
                                   for event in events.get(kind, ())})


def _store(w: Writer, agent_id: Hashable, held: Held) -> None:
    """Writes an agent's allocations; ``version`` and ``updated_at`` only when this is the newer
    change (see ``projections.tallies``)."""
    w.execute_one(
        """
        UPDATE agents SET allocations = %(allocations)s::jsonb, occupied = %(occupied)s::jsonb,
                          kernel_count = %(count)s,
                          updated_at = CASE WHEN version <= %(version)s THEN %(at)s ELSE updated_at END,
                          version = GREATEST(version, %(version)s)
         WHERE agent_id = %(id)s
        """,
        {
            "allocations": json_text(held.entries),
            "occupied": json_text(sum_slots(held.entries.values())),
            "count": len(held.entries),
            "at": held.updated_at,
            "version": held.version,
            "id": agent_id,
        },
        f"no agent {agent_id} for its allocations",
    )


def _store_many(w: Writer, items: list[tuple[Hashable, Held]]) -> None:
    """Writes the allocations of many agents with one statement, each as ``_store`` writes it."""
    rows = [{"agent_id": agent_id, "allocations": held.entries, "occupied": sum_slots(held.entries.values()),
             "kernel_count": len(held.entries), "updated_at": held.updated_at, "version": held.version}
            for agent_id, held in items]
    w.execute_one(
        """
        UPDATE agents AS a SET allocations = r.allocations, occupied = r.occupied, kernel_count = r.kernel_count,
                               updated_at = CASE WHEN a.version <= r.version THEN r.updated_at ELSE a.updated_at END,
                               version = GREATEST(a.version, r.version)
          FROM json_to_recordset(%s::json) AS r(agent_id text, allocations jsonb, occupied jsonb,
                                                kernel_count integer, updated_at timestamptz, version integer)
         WHERE a.agent_id = r.agent_id
        """,
        (json_text(rows),),
        f"no agent among {sorted(str(agent_id) for agent_id, _ in items)} for its allocations",
        rows=len(rows),
    )


ALLOCATIONS = Tally("agents.allocations", _load, _store, _load_many, _store_many)
"""Each agent's allocations, tallied per batch (``projections.tallies``)."""


def _update(w: Writer, event: Event, assignment: str | None, *values: object) -> None:
    extra = f"{assignment}, " if assignment else ""
    w.execute_one(
        f"UPDATE agents SET {extra}updated_at = %s, version = %s WHERE agent_id = %s",
        (*values, event.timestamp, event.originator_version, event.originator_id),
        _missing(event),
    )


def _missing(event: Event) -> str:
    return f"no agent {event.originator_id} for {type(event).type_name()}"

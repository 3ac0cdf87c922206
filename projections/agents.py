"""Read model ``agents``: capacity, occupied slots, assigned kernels and liveness of each agent.

``allocations`` keeps the slots of each assigned kernel (kernel id -> slots), so a
release subtracts exactly what the assignment added; ``occupied`` is their sum and
``kernel_count`` their number, as in the Agent aggregate.
"""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatch

import msgspec

from contracts import agent as ev
from contracts.envelope import Event
from contracts.status import AgentStatus
from projections.delivery import Entry
from projections.errors import MissingRowError
from projections.values import json_text, total_slots
from projections.writer import Writer

__all__ = ["project"]

_allocations = msgspec.json.Decoder(dict[str, dict[str, Decimal]])


def project(w: Writer, entry: Entry) -> None:
    """Applies ``entry`` to the agents table (events of other aggregates change nothing)."""
    if entry.event is not None:
        _apply(entry.event, w, entry)


@singledispatch
def _apply(event: Event, w: Writer, entry: Entry) -> None:
    """Ignores events that do not concern agents."""


@_apply.register
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


@_apply.register
def _(event: ev.AgentCapacityChanged, w: Writer, entry: Entry) -> None:
    _update(w, event, "capacity = %s::jsonb", json_text(event.capacity))


@_apply.register
def _(event: ev.KernelAssigned, w: Writer, entry: Entry) -> None:
    allocations = _read_allocations(w, event)
    allocations[event.kernel_id] = dict(event.slots)
    _write_allocations(w, event, allocations)


@_apply.register
def _(event: ev.KernelReleased, w: Writer, entry: Entry) -> None:
    allocations = _read_allocations(w, event)
    allocations.pop(event.kernel_id, None)
    _write_allocations(w, event, allocations)


@_apply.register
def _(event: ev.KernelTerminationRequested, w: Writer, entry: Entry) -> None:
    _update(w, event, None)


@_apply.register
def _(event: ev.AgentLost, w: Writer, entry: Entry) -> None:
    _update(w, event, "status = %s", AgentStatus.LOST.value)


@_apply.register
def _(event: ev.AgentRecovered, w: Writer, entry: Entry) -> None:
    _update(w, event, "status = %s", AgentStatus.ALIVE.value)


@_apply.register
def _(event: ev.OrphanContainerDestroyed, w: Writer, entry: Entry) -> None:
    _update(w, event, None)


def _read_allocations(w: Writer, event: Event) -> dict[str, dict[str, Decimal]]:
    row = w.fetchone("SELECT allocations::text FROM agents WHERE agent_id = %s", (event.originator_id,))
    if row is None:
        raise MissingRowError(_missing(event))
    return _allocations.decode(row[0])


def _write_allocations(w: Writer, event: Event, allocations: dict[str, dict[str, Decimal]]) -> None:
    w.execute_one(
        """
        UPDATE agents SET allocations = %s::jsonb, occupied = %s::jsonb, kernel_count = %s,
                          updated_at = %s, version = %s
         WHERE agent_id = %s
        """,
        (
            json_text(allocations),
            json_text(total_slots(allocations.values())),
            len(allocations),
            event.timestamp,
            event.originator_version,
            event.originator_id,
        ),
        _missing(event),
    )


def _update(w: Writer, event: Event, assignment: str | None, *values: object) -> None:
    extra = f"{assignment}, " if assignment else ""
    w.execute_one(
        f"UPDATE agents SET {extra}updated_at = %s, version = %s WHERE agent_id = %s",
        (*values, event.timestamp, event.originator_version, event.originator_id),
        _missing(event),
    )


def _missing(event: Event) -> str:
    return f"no agent {event.originator_id} for {type(event).type_name()}"

"""Read model ``kernels``: one row per kernel (container) of a session.

Kernel statuses follow the session aggregate: PENDING when requested, SCHEDULED with
its agent when placed, then PREPARING, CREATING, RUNNING, and TERMINATED (ERROR when
it failed to start) with the reason and, for a failed start, its cause (``status_detail``,
which holds the pull progress while it prepares).
"""

from __future__ import annotations

from functools import singledispatch
from typing import Mapping

from contracts import session as ev
from contracts.envelope import Event
from contracts.status import KernelStatus
from projections.delivery import Entry
from projections.errors import MissingRowError
from projections.writer import Writer, bulk_insert

__all__ = ["apply_event", "preload"]


def preload(w: Writer, events: Mapping[type, list[Event]]) -> None:
    """Has a bulk batch hold the rows of the kernels its ``events`` (by type) change but do not
    create (``Writer.preload``): they are changed in memory, as the rows it inserts are."""
    created = {kernel.kernel_id for event in events.get(ev.SessionRequested, ()) for kernel in event.spec.kernels}
    changed = {placement.kernel_id for event in events.get(ev.SessionScheduled, ()) for placement in event.placements}
    changed.update(event.kernel_id for kind in _KERNEL_EVENTS for event in events.get(kind, ()))
    w.preload(_insert, changed - created)


@singledispatch
def apply_event(event: Event, w: Writer, entry: Entry) -> None:
    """Applies ``event`` (of ``entry``) to the kernels table, by its type; this default, for events that do not
    concern kernels, changes nothing (``runner.handlers`` leaves it out)."""


@apply_event.register
def _(event: ev.SessionRequested, w: Writer, entry: Entry) -> None:
    for kernel in event.spec.kernels:
        row = (
            kernel.kernel_id,
            event.originator_id,
            kernel.cluster_role,
            kernel.cluster_idx,
            KernelStatus.PENDING.value,
            kernel.slots,
            event.timestamp,
            event.timestamp,
            None,
            None,
            None,
            None,
            None,
        )
        w.defer(_insert, row, key=kernel.kernel_id)


@apply_event.register
def _(event: ev.SessionScheduled, w: Writer, entry: Entry) -> None:
    for placement in event.placements:
        _set(w, event, placement.kernel_id, agent_id=placement.agent_id, status=KernelStatus.SCHEDULED.value)


@apply_event.register
def _(event: ev.KernelPreparing, w: Writer, entry: Entry) -> None:
    _set(w, event, event.kernel_id, status=KernelStatus.PREPARING.value)


@apply_event.register
def _(event: ev.KernelProgressed, w: Writer, entry: Entry) -> None:
    _set(w, event, event.kernel_id, status_detail=event.detail)


@apply_event.register
def _(event: ev.KernelCreating, w: Writer, entry: Entry) -> None:
    _set(w, event, event.kernel_id, status=KernelStatus.CREATING.value, status_detail=None)


@apply_event.register
def _(event: ev.KernelStarted, w: Writer, entry: Entry) -> None:
    _set(w, event, event.kernel_id, status=KernelStatus.RUNNING.value, container_id=event.container_id,
         status_detail=None)


@apply_event.register
def _(event: ev.KernelTerminated, w: Writer, entry: Entry) -> None:
    status = KernelStatus.ERROR if event.reason.fails_kernel else KernelStatus.TERMINATED
    _set(w, event, event.kernel_id, status=status.value, exit_code=event.exit_code, status_reason=event.reason.value,
         status_detail=event.detail)


_insert = bulk_insert(
    "kernels",
    [
        ("kernel_id", "text"),
        ("session_id", "text"),
        ("cluster_role", "text"),
        ("cluster_idx", "integer"),
        ("status", "text"),
        ("slots", "jsonb"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("agent_id", "text"),
        ("container_id", "text"),
        ("exit_code", "integer"),
        ("status_reason", "text"),
        ("status_detail", "text"),
    ],
    key="kernel_id",
)
"""Every column: a row held in memory (a bulk batch, ``Writer.held``) is written whole."""
_SETTABLE = ("agent_id", "status", "container_id", "exit_code", "status_reason", "status_detail")


def _set(w: Writer, event: Event, kernel_id: str, **values: object) -> None:
    """Sets ``values`` (of ``_SETTABLE``) and the event's time on the kernel's row of the event's session:
    in memory when the batch holds it, else with one statement."""
    columns = [name for name in _SETTABLE if name in values]
    row = w.held(_insert, kernel_id)
    if row is not None:
        if row["session_id"] != event.originator_id:
            raise MissingRowError(_missing(event, kernel_id))
        row.update({name: values[name] for name in columns}, updated_at=event.timestamp)
        return
    assignments = ", ".join(f"{name} = %s" for name in columns)
    w.execute_one(
        f"UPDATE kernels SET {assignments}, updated_at = %s WHERE kernel_id = %s AND session_id = %s",
        (*(values[name] for name in columns), event.timestamp, kernel_id, event.originator_id),
        _missing(event, kernel_id),
    )


_KERNEL_EVENTS = (ev.KernelPreparing, ev.KernelProgressed, ev.KernelCreating, ev.KernelStarted, ev.KernelTerminated)
"""The events that change the row of the kernel they name (``kernel_id``)."""


def _missing(event: Event, kernel_id: str) -> str:
    return f"no kernel {kernel_id} of session {event.originator_id} for {type(event).type_name()}"

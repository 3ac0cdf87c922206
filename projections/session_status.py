"""A session's status as its events make it: the ONE derivation of status, reason and detail.

The ``sessions`` read model writes it (``projections.sessions``) and the gateway's
``sessionStatus`` subscription folds it over the live events (``evolve_status``), so both
say the same thing: ``session.requested`` → PENDING, ``session.scheduled`` → SCHEDULED
(reason ``scheduled``), ``session.status_changed`` → its status, reason and detail (the
cause of a failed start), and ``session.kernel_progressed`` replaces only the detail (an
image pull's progress) until the next status clears it. ``session.pending_reason_changed``
sets why the scheduler could not place it yet, until the next status clears it, as the read
model's ``pending_code`` and ``pending_reason``. Any other event changes nothing.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from contracts import session as ev
from contracts.envelope import Event
from contracts.status import Reason, SessionStatus

__all__ = ["SessionStatusView", "StatusChange", "evolve_status", "status_change"]


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    """What one event changes: a new ``status`` with its ``reason`` and ``detail``, or with
    ``status`` None only the ``detail`` (the status and reason stay)."""

    status: SessionStatus | None
    reason: Reason | None = None
    detail: str | None = None


class SessionStatusView(msgspec.Struct, frozen=True, kw_only=True):
    """A session's status, why it was entered (``reason``), its detail for people and, while it
    waits, why the last scheduling pass could not place it (``pending_code``, ``pending_reason``)."""

    status: SessionStatus
    reason: Reason | None = None
    detail: str | None = None
    pending_code: str | None = None
    pending_reason: str | None = None


@singledispatch
def status_change(event: Event) -> StatusChange | None:
    """Returns what ``event`` changes in its session's status, None when nothing."""
    return None


@status_change.register
def _(event: ev.SessionRequested) -> StatusChange:
    return StatusChange(status=SessionStatus.PENDING)


@status_change.register
def _(event: ev.SessionScheduled) -> StatusChange:
    return StatusChange(status=SessionStatus.SCHEDULED, reason=Reason.SCHEDULED)


@status_change.register
def _(event: ev.SessionStatusChanged) -> StatusChange:
    return StatusChange(status=event.status, reason=event.reason, detail=event.detail)


@status_change.register
def _(event: ev.KernelProgressed) -> StatusChange:
    return StatusChange(status=None, detail=event.detail)


def evolve_status(view: SessionStatusView | None, event: Event) -> SessionStatusView | None:
    """Returns the status after ``event`` (``view`` itself when it changes nothing; None before
    the session's first status)."""
    if isinstance(event, ev.SessionPendingReasonChanged):
        if view is None:
            return None
        return msgspec.structs.replace(view, pending_code=event.code, pending_reason=event.message)
    change = status_change(event)
    if change is None:
        return view
    if change.status is None:
        return None if view is None else msgspec.structs.replace(view, detail=change.detail)
    return SessionStatusView(status=change.status, reason=change.reason, detail=change.detail)

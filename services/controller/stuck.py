"""Stuck sessions: a session that stays in a transitional state beyond that state's deadline
ends in ERROR with reason ``transition-timeout`` (Backend.AI's best-known failure is sessions
stuck in PREPARING forever).

``StuckDeadlines`` (no I/O, clock injected) learns from the session events since when each
session is in ``SCHEDULED``, ``PREPARING``, ``CREATING`` or ``TERMINATING`` (an image pull's
progress counts as life: PREPARING's clock restarts at each ``KernelProgressed``) and says
which sessions are past their state's deadline. It has the shape ``enforce_timeouts`` drives
(``due``, ``next_deadline``, ``done``, ``defer``), so the same loop enforces both.

``StuckSessionSweeper.expire`` (blocking: run it in the store's thread) ends such a session:
for every kernel not yet ended it asks the kernel's agent to stop it
(``KernelTerminationRequested``, so no container is left behind) and marks it exited
(``KernelTerminated`` with the reason and, as detail, the state and deadline); the session
use case then releases the kernel on its agent and, with the last kernel, the session's
quota, and records ``SessionStatusChanged(ERROR, transition-timeout)``. Every step is
idempotent: a crash half-way is finished at the next start, when the history shows the
session still in its transitional state.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from functools import singledispatchmethod

import msgspec

from contracts import commands as c
from contracts import session as sev
from contracts.envelope import Event, utc_now
from contracts.status import Reason, SessionStatus
from services.application.agents import Agents
from services.application.context import make_context
from services.application.sessions import Sessions
from services.controller.deadline_index import DeadlineIndex
from services.controller.timeouts import Clock

__all__ = ["STUCK_EVENTS", "StuckDeadlines", "StuckSessionSweeper"]

log = logging.getLogger(__name__)

ACTOR = "service:controller"

STUCK_EVENTS: tuple[type[Event], ...] = (sev.SessionScheduled, sev.SessionStatusChanged, sev.KernelProgressed)
"""The events ``StuckDeadlines`` learns from."""


class _Stay(msgspec.Struct):
    status: SessionStatus
    since: dt.datetime
    retry_at: dt.datetime | None = None


class StuckDeadlines:
    """Which sessions stayed too long in a transitional state, and when the next one will have."""

    def __init__(self, limits: Mapping[SessionStatus, float], clock: Clock = utc_now) -> None:
        """``limits``: the deadline in seconds of each transitional status (``Settings.stuck_deadlines``)."""
        self._limits = {status: seconds for status, seconds in limits.items() if seconds > 0}
        self._clock = clock
        self._stays: dict[str, _Stay] = {}
        self._index = DeadlineIndex()

    @singledispatchmethod
    def apply(self, event: Event) -> None:
        """Learns from ``event`` (other events change nothing)."""

    @apply.register
    def _(self, event: sev.SessionScheduled) -> None:
        self._enter(event.originator_id, SessionStatus.SCHEDULED, event.timestamp)

    @apply.register
    def _(self, event: sev.SessionStatusChanged) -> None:
        self._enter(event.originator_id, event.status, event.timestamp)

    @apply.register
    def _(self, event: sev.KernelProgressed) -> None:
        stay = self._stays.get(event.originator_id)
        if stay is not None and stay.status is SessionStatus.PREPARING:
            stay.since = max(stay.since, event.timestamp)
            self._index.set(event.originator_id, self.deadline(event.originator_id))

    def _enter(self, session_id: str, status: SessionStatus, when: dt.datetime) -> None:
        if status in self._limits:
            self._stays[session_id] = _Stay(status, when)
            self._index.set(session_id, self.deadline(session_id))
        else:
            self.done(session_id)

    def stay(self, session_id: str) -> tuple[SessionStatus, float] | None:
        """Returns the transitional state ``session_id`` is in and that state's deadline in
        seconds; None when it is in none (or that state has no deadline)."""
        stay = self._stays.get(session_id)
        return None if stay is None else (stay.status, self._limits[stay.status])

    def deadline(self, session_id: str) -> dt.datetime | None:
        """Returns when ``session_id`` is stuck (None: it cannot be)."""
        stay = self._stays.get(session_id)
        if stay is None:
            return None
        when = stay.since + dt.timedelta(seconds=self._limits[stay.status])
        return when if stay.retry_at is None else max(when, stay.retry_at)

    def due(self) -> list[tuple[str, Reason]]:
        """Returns the sessions past their state's deadline, by session id, with the reason."""
        return [(session_id, Reason.TRANSITION_TIMEOUT) for session_id in self._index.due(self._clock())]

    def next_deadline(self) -> dt.datetime | None:
        """Returns the earliest deadline of any session, None when there is none."""
        return self._index.earliest()

    def done(self, session_id: str) -> None:
        """Forgets ``session_id`` until its next transition (it was ended, or cannot be)."""
        self._stays.pop(session_id, None)
        self._index.discard(session_id)

    def defer(self, session_id: str, seconds: float) -> None:
        """Postpones the next attempt on ``session_id`` by ``seconds`` (after a failed one)."""
        stay = self._stays.get(session_id)
        if stay is not None:
            stay.retry_at = self._clock() + dt.timedelta(seconds=seconds)
            self._index.set(session_id, self.deadline(session_id))


class StuckSessionSweeper:
    """Ends a stuck session in ERROR and releases what it holds (blocking: the store's thread)."""

    def __init__(self, sessions: Sessions, agents: Agents) -> None:
        self._sessions = sessions
        self._agents = agents

    def expire(self, session_id: str, status: SessionStatus, seconds: float) -> bool:
        """Ends ``session_id`` when it is still in ``status``: asks each of its kernels' agents to
        stop the kernel and marks the kernel exited with ``transition-timeout``. Returns False when
        the session had moved on meanwhile (nothing done)."""
        state = self._sessions.get(session_id)
        if state is None or state.status is not status:
            return False
        reason = Reason.TRANSITION_TIMEOUT
        detail = f"stuck in {status.value} for more than {seconds:g} s"
        ctx = make_context(ACTOR)
        log.warning("session %s %s: ending it in ERROR", session_id, detail)
        for kernel in state.kernels:
            if kernel.status.is_terminal:
                continue
            if kernel.agent_id is not None:
                self._agents.handle(kernel.agent_id, c.RequestKernelTermination(kernel_id=kernel.kernel_id, reason=reason),
                                    ctx)
            exited = c.MarkKernelExited(kernel_id=kernel.kernel_id, exit_code=None, reason=reason, detail=detail)
            self._sessions.report(session_id, exited, ctx)
        return True

"""How the sessions that pending sessions depend on finished: kept for those only, so that the
snapshot holds the live platform, not every session that ever finished.

A pending session's dependency that finishes while it waits is learnt from the stream. One that
finished before (or before the snapshot's start, or that the snapshot never saw) is *unresolved*:
the pass runner looks it up in the event store (``PassRunner``: the dependency's own events, one
indexed read) and hands the answer to ``resolve``. The outcome of a session nobody pending depends
on any more is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from contracts import session as session_ev
from contracts.envelope import Event
from contracts.status import Reason, SessionStatus

__all__ = ["Dependencies", "session_outcome"]

_FAILED = frozenset({Reason.TASK_FAILED, Reason.TASK_TIMEOUT, Reason.FAILED_TO_START, Reason.AGENT_LOST, Reason.OOM_KILLED,
                     Reason.TRANSITION_TIMEOUT})
"""Reasons of a TERMINATED session that make it a failed dependency."""


def session_outcome(event: Event) -> bool | None:
    """Returns whether ``event`` ends its session successfully (True), as a failed dependency
    (False), or does not end it (None)."""
    if not isinstance(event, session_ev.SessionStatusChanged) or not event.status.is_terminal:
        return None
    return event.status is SessionStatus.TERMINATED and event.reason not in _FAILED


class Dependencies:
    """The outcomes of the sessions some pending session depends on."""

    def __init__(self) -> None:
        self._wanted: dict[str, int] = {}
        """dependency -> how many pending sessions depend on it"""
        self._outcomes: dict[str, bool] = {}
        self._unknown: set[str] = set()

    @classmethod
    def restore(cls, pending: Iterable[Iterable[str]], outcomes: Mapping[str, bool],
                is_pending: Callable[[str], bool]) -> Dependencies:
        """Returns the bookkeeping of the pending sessions' dependencies ``pending`` with the
        outcomes known; the others are unresolved (looked up again)."""
        dependencies = cls()
        dependencies._outcomes = dict(outcomes)
        for of_one in pending:
            dependencies.want(of_one, is_pending)
        return dependencies

    def want(self, dependencies: Iterable[str], is_pending: Callable[[str], bool]) -> None:
        """Counts a pending session's dependencies; one neither known finished nor pending is unresolved."""
        for dependency in dependencies:
            self._wanted[dependency] = self._wanted.get(dependency, 0) + 1
            if dependency not in self._outcomes and not is_pending(dependency):
                self._unknown.add(dependency)

    def release(self, dependencies: Iterable[str]) -> None:
        """Uncounts the dependencies of a session no longer pending; forgets those nobody waits on."""
        for dependency in dependencies:
            left = self._wanted.get(dependency, 0) - 1
            if left > 0:
                self._wanted[dependency] = left
            else:
                self._wanted.pop(dependency, None)
                self._outcomes.pop(dependency, None)
                self._unknown.discard(dependency)

    def finished(self, session_id: str, ok: bool) -> bool:
        """Records how a session finished when a pending session depends on it; returns True then."""
        if session_id not in self._wanted:
            return False
        self._outcomes[session_id] = ok
        self._unknown.discard(session_id)
        return True

    def unresolved(self) -> set[str]:
        """Returns the dependencies whose outcome must be looked up in the store."""
        return set(self._unknown)

    def resolve(self, outcomes: Mapping[str, bool | None]) -> None:
        """Takes what the store says of unresolved dependencies (None: not finished, or no such session)."""
        for dependency, ok in outcomes.items():
            self._unknown.discard(dependency)
            if ok is not None and dependency in self._wanted:
                self._outcomes[dependency] = ok

    def outcomes(self) -> dict[str, bool]:
        """Returns the known outcomes (a copy)."""
        return dict(self._outcomes)

"""The scheduler's in-memory view of the cluster: pending sessions (FIFO) and agents.

Built from the EVENTS stream and refreshed with the fresh states the scheduler
loads when it applies a plan. The event store stays the source of truth: a stale
snapshot only costs a refused placement, never a wrong one.
"""

from __future__ import annotations

import logging
from functools import singledispatchmethod
from typing import Iterable, Mapping

from contracts import agent as agent_ev
from contracts import session as session_ev
from contracts.envelope import Event
from contracts.status import SessionStatus
from domain import agent as agent_domain
from domain.agent import AgentState
from domain.placement import AgentView, PendingSession

__all__ = ["Snapshot"]

log = logging.getLogger(__name__)

_MAY_ENABLE = (
    agent_ev.AgentRegistered,
    agent_ev.AgentCapacityChanged,
    agent_ev.KernelReleased,
    agent_ev.AgentRecovered,
)
"""Agent events after which a pending session may fit."""


class Snapshot:
    """Pending sessions in request order and the agents with their allocations."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingSession] = {}
        self._agents: dict[str, AgentState] = {}

    def pending(self) -> list[PendingSession]:
        """Returns the pending sessions, oldest request first."""
        return list(self._pending.values())

    def agents(self) -> list[AgentView]:
        """Returns every known agent with its free slots and liveness."""
        return [AgentView(agent_id=a.id, free=a.free, status=a.status) for a in self._agents.values()]

    def agent(self, agent_id: str) -> AgentState | None:
        """Returns the snapshot's state of one agent."""
        return self._agents.get(agent_id)

    @singledispatchmethod
    def apply(self, event: Event) -> bool:
        """Applies one event from the stream; returns True when it may allow a placement."""
        return False

    @apply.register
    def _(self, event: session_ev.SessionRequested) -> bool:
        if event.originator_id in self._pending:
            return False
        kernels = tuple((k.kernel_id, dict(k.slots)) for k in event.kernels)
        self._pending[event.originator_id] = PendingSession(session_id=event.originator_id, kernels=kernels)
        return True

    @apply.register
    def _(self, event: session_ev.SessionScheduled) -> bool:
        self._pending.pop(event.originator_id, None)
        return False

    @apply.register
    def _(self, event: session_ev.SessionStatusChanged) -> bool:
        if event.status is not SessionStatus.PENDING:
            self._pending.pop(event.originator_id, None)
        return False

    @apply.register(agent_ev.AgentRegistered)
    @apply.register(agent_ev.AgentCapacityChanged)
    @apply.register(agent_ev.KernelAssigned)
    @apply.register(agent_ev.KernelTerminationRequested)
    @apply.register(agent_ev.KernelReleased)
    @apply.register(agent_ev.AgentLost)
    @apply.register(agent_ev.AgentRecovered)
    def _(self, event: Event) -> bool:
        current = self._agents.get(event.originator_id)
        version = current.version if current is not None else 0
        if event.originator_version <= version:
            return False  # already in a fresher state loaded from the store
        if event.originator_version != version + 1:
            log.warning("agent %s: event v%d follows v%d", event.originator_id, event.originator_version, version)
        self._agents[event.originator_id] = agent_domain.evolve(current, event)
        return isinstance(event, _MAY_ENABLE)

    def refresh(self, agents: Mapping[str, AgentState], gone: Iterable[str]) -> None:
        """Takes fresh agent states loaded from the store and drops sessions no longer pending."""
        for agent_id, fresh in agents.items():
            current = self._agents.get(agent_id)
            if current is None or fresh.version >= current.version:
                self._agents[agent_id] = fresh
        for session_id in gone:
            self._pending.pop(session_id, None)

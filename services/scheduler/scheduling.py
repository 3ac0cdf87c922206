"""Applies a placement plan: every placement of one pass in one event-store transaction.

Each session and agent is loaded fresh from the store (the source of truth for
versions), the domain decides ``ScheduleSession`` and ``AssignKernel``, and all the
events are recorded together. A session that the domain refuses (cancelled
meanwhile, agent full or lost) is skipped on its own; the others still go ahead.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import msgspec

from contracts import commands as c
from contracts.envelope import Event
from contracts.session import KernelPlacement
from contracts.status import SessionStatus
from domain import agent as agent_domain
from domain import session as session_domain
from domain.agent import AgentState
from domain.emitting import Context
from domain.errors import DomainError
from domain.session import SessionState
from services.common.store import BerthApplication, retry_on_conflict

__all__ = ["Outcome", "Scheduling"]

log = logging.getLogger(__name__)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What applying a plan did."""

    placed: list[str]
    """Sessions scheduled by this transaction."""
    skipped: dict[str, str]
    """Sessions the domain refused, with the reason."""
    gone: list[str]
    """Sessions found no longer pending (scheduled or cancelled meanwhile, or unknown)."""
    agents: dict[str, AgentState]
    """Fresh state of every agent looked at, including this transaction's assignments."""
    position: int | None
    """Position of the last recorded event; None when nothing was recorded."""


class _Attempt:
    """One try at applying a plan against freshly loaded aggregates."""

    def __init__(self, app: BerthApplication, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx
        self.agents: dict[str, AgentState] = {}
        self.events: list[Event] = []
        self.placed: list[str] = []
        self.skipped: dict[str, str] = {}
        self.gone: list[str] = []

    def agent(self, agent_id: str) -> AgentState | None:
        if agent_id not in self.agents:
            state = agent_domain.replay(self.app.load(agent_id))
            if state is None:
                return None
            self.agents[agent_id] = state
        return self.agents[agent_id]

    def place(self, session_id: str, placements: Sequence[KernelPlacement]) -> None:
        session = session_domain.replay(self.app.load(session_id))
        if session is None or session.status is not SessionStatus.PENDING:
            self.gone.append(session_id)
            return
        try:
            events = session_domain.decide(session, c.ScheduleSession(placements=list(placements)), self.ctx, session_id)
            trial, assigned = self._assign(session, placements)
        except DomainError as exc:
            log.info("not placing session %s: %s", session_id, exc)
            self.skipped[session_id] = f"{type(exc).__name__}: {exc}"
            return
        self.agents.update(trial)
        self.events += events + assigned
        self.placed.append(session_id)

    def _assign(
        self, session: SessionState, placements: Sequence[KernelPlacement]
    ) -> tuple[dict[str, AgentState], list[Event]]:
        """Returns the agents after assigning the session's kernels, and the events (all or nothing)."""
        trial: dict[str, AgentState] = {}
        events: list[Event] = []
        for placement in placements:
            agent = trial.get(placement.agent_id) or self.agent(placement.agent_id)
            kernel = session.kernel(placement.kernel_id)
            command = c.AssignKernel(
                kernel_id=kernel.kernel_id,
                session_id=session.id,
                image=session.image,
                slots=dict(kernel.slots),
                cluster_role=kernel.cluster_role,
                startup_command=session.startup_command,
            )
            for event in agent_domain.decide(agent, command, self.ctx, placement.agent_id):
                agent = agent_domain.evolve(agent, event)
                events.append(event)
            assert agent is not None
            trial[placement.agent_id] = agent
        return trial, events


class Scheduling(BerthApplication):
    """Records the placements of a scheduling pass atomically."""

    def place(self, plan: Mapping[str, Sequence[KernelPlacement]], ctx: Context) -> Outcome:
        """Schedules each planned session and assigns its kernels, in one transaction;
        reloads and re-decides everything after a concurrency conflict (bounded)."""

        def attempt() -> Outcome:
            state = _Attempt(self, ctx)
            for session_id, placements in plan.items():
                state.place(session_id, placements)
            position = self.record(state.events)
            return Outcome(
                placed=state.placed, skipped=state.skipped, gone=state.gone, agents=state.agents, position=position
            )

        return retry_on_conflict(attempt)

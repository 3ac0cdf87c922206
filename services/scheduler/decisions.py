"""Turns a plan into the events of one scheduling pass, decided by the domain against
the snapshot's states (and their versions).

Per placed session: ``SessionScheduled`` and one ``KernelAssigned`` per kernel; per
quota scope touched: one ``QuotaConsumed`` listing the pass's sessions; per session
whose pending reason changed: ``SessionPendingReasonChanged``; per expired session:
its cancellation. A session the domain refuses (the plan and the aggregates
disagree) is left out on its own; the rest of the pass goes ahead.

The snapshot keeps what planning needs of a pending session and the version it knows, not the
free-form fields of its request (startup command, mounts) that its ``KernelAssigned`` carries to the
agent: the pass hands in the ``SessionRequested`` of the sessions it places or cancels, read from the
store (``PassRunner``), and each is decided against its state at the snapshot's version.
"""

from __future__ import annotations

import logging
from typing import Mapping, Protocol

import msgspec

from contracts import commands as c
from contracts.envelope import Event
from contracts.quota import QuotaScope, quota_id
from contracts.session import KernelPlacement, SessionPendingReasonChanged, SessionRequested
from contracts.slots import add_slots
from contracts.status import Reason
from domain import agent as agent_domain
from domain import quota as quota_domain
from domain import session as session_domain
from domain.agent import AgentState
from domain.emitting import Context, Emitter
from domain.errors import DomainError
from domain.quota import QuotaState
from domain.scheduling.model import PendingReason, Plan, SessionPlacement
from domain.session import SessionState

__all__ = ["Decisions", "States", "decide_pass", "pending_session", "sessions_to_read"]

log = logging.getLogger(__name__)

MAX_PLACEMENTS = 1000
"""Sessions one pass places at most. A pass's ``QuotaConsumed`` lists every session it places in a
scope (about 100 bytes each): unbounded, a burst of thousands placed at once would make an event
over ``contracts.travel.MAX_EVENT_BYTES``, which the store refuses — and the pass would fail for
ever. The rest are placed by the next passes, at once."""

MAX_REASONS = 2000
"""Pending-reason events one pass records at most (a pass over a long, newly blocked queue would
otherwise write one huge transaction); the rest follow in the next passes."""


class States(Protocol):
    """Where the current states come from (the snapshot)."""

    def pending_version(self, session_id: str) -> int | None: ...

    def agent(self, agent_id: str) -> AgentState | None: ...

    def quota(self, quota_id: str) -> QuotaState | None: ...

    def reason(self, session_id: str) -> PendingReason | None: ...


class Decisions:
    """The events of one pass and what they do."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.placed: list[str] = []
        self.refused: dict[str, str] = {}
        self.expired: list[str] = []
        self.aggregates: set[str] = set()
        """Every aggregate written (caught up when the transaction conflicts)."""
        self.reasons_left = 0
        """Changed pending reasons left for the next pass (over ``MAX_REASONS``)."""
        self.placements_left = 0
        """Planned placements left for the next pass (over the pass's placement cap)."""


def sessions_to_read(plan: Plan, max_placements: int = MAX_PLACEMENTS) -> list[str]:
    """Returns the sessions whose ``SessionRequested`` ``decide_pass`` needs: those the pass may place
    (the first ``max_placements`` of the plan) or cancel."""
    return [p.session_id for p in plan.placements[:max_placements]] + list(plan.expired)


def decide_pass(plan: Plan, states: States, requests: Mapping[str, SessionRequested], ctx: Context, *,
                max_placements: int = MAX_PLACEMENTS) -> Decisions:
    """Returns the events of ``plan`` as decided against ``states`` and the ``requests`` of the sessions
    named by ``sessions_to_read`` (the first ``max_placements`` placements of the plan are decided;
    ``placements_left`` counts the rest)."""
    out = Decisions()
    agents: dict[str, AgentState] = {}
    consumed: dict[tuple[QuotaScope, str], dict[str, dict]] = {}
    for index, placement in enumerate(plan.placements):
        if index >= max_placements:
            out.placements_left += 1
            continue
        session = pending_session(states, requests, placement.session_id)
        if session is None:
            out.refused[placement.session_id] = "no longer pending"
            continue
        try:
            events, trial = _place(session, placement, agents, states, ctx)
        except DomainError as exc:
            log.info("not placing session %s: %s", placement.session_id, exc)
            out.refused[placement.session_id] = f"{type(exc).__name__}: {exc}"
            continue
        agents.update(trial)
        out.events += events
        out.placed.append(session.id)
        total = _total(session)
        for scope in _scopes(session):
            consumed.setdefault(scope, {})[session.id] = total
    for (scope, name), allocations in sorted(consumed.items()):
        aggregate = quota_id(scope, name)
        state = states.quota(aggregate)
        out.events += quota_domain.decide(state, c.ConsumeQuota(allocations=allocations), ctx, aggregate)
    recorded = 0
    for session_id, reason in plan.pending.items():
        version = states.pending_version(session_id)
        if version is None or states.reason(session_id) == reason:
            continue
        if recorded == MAX_REASONS:
            out.reasons_left += 1
            continue
        emit = Emitter(session_id, version, ctx)
        out.events.append(emit(SessionPendingReasonChanged, code=reason.code, message=reason.message))
        recorded += 1
    for session_id in plan.expired:
        session = pending_session(states, requests, session_id)
        if session is not None:
            out.events += session_domain.decide(session, c.TerminateSession(reason=Reason.PENDING_TIMEOUT), ctx, session_id)
            out.expired.append(session_id)
    out.aggregates = {e.originator_id for e in out.events}
    return out


def pending_session(states: States, requests: Mapping[str, SessionRequested], session_id: str) -> SessionState | None:
    """Returns the state of a session the snapshot has pending, at the version it knows; None when it is
    not pending there (or its request was not read). While a session is pending its state is its request's
    but for the version: ``domain.session.evolve`` changes nothing else on a pending reason."""
    version = states.pending_version(session_id)
    requested = requests.get(session_id)
    if version is None or requested is None:
        return None
    return msgspec.structs.replace(session_domain.evolve(None, requested), version=version)


def _place(
    session: SessionState,
    placement: SessionPlacement,
    agents: dict[str, AgentState],
    states: States,
    ctx: Context,
) -> tuple[list[Event], dict[str, AgentState]]:
    """Returns the session's events and the agents after its assignments (all or nothing)."""
    placements = [KernelPlacement(kernel_id=k, agent_id=a) for k, a in placement.kernels]
    events = session_domain.decide(session, c.ScheduleSession(placements=placements), ctx, session.id)
    trial: dict[str, AgentState] = {}
    for kernel_id, agent_id in placement.kernels:
        agent = trial.get(agent_id) or agents.get(agent_id) or states.agent(agent_id)
        kernel = session.kernel(kernel_id)
        command = c.AssignKernel(
            kernel_id=kernel_id,
            session_id=session.id,
            image=session.spec.image,
            slots=dict(kernel.slots),
            cluster_role=kernel.cluster_role,
            startup_command=session.spec.startup_command,
            mounts=list(session.spec.mounts),
        )
        for event in agent_domain.decide(agent, command, ctx, agent_id):
            agent = agent_domain.evolve(agent, event)
            events.append(event)
        assert agent is not None
        trial[agent_id] = agent
    return events, trial


def _total(session: SessionState) -> dict:
    total: dict = {}
    for kernel in session.kernels:
        total = add_slots(total, kernel.slots)
    return total


def _scopes(session: SessionState) -> list[tuple[QuotaScope, str]]:
    return quota_domain.quota_scopes(session.owner, session.spec.project, session.spec.domain)

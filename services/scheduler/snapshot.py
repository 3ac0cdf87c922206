"""The scheduler's in-memory view of the cluster, kept from the EVENTS stream.

It holds the pending sessions (what planning needs of each, ``PendingSession``, with its
last pending reason: not the free-form fields of its request, such as its startup command,
which a pass reads from the store for the sessions it places), the agents (``domain.agent``
states), quota usage per scope (kept incrementally), the tenancy limits and which sessions
finished and how.
The event store stays the source of truth: every event the scheduler writes carries
the version the snapshot knows, so a stale snapshot costs a refused transaction
(then a reload of the aggregates involved), never a wrong placement.
"""

from __future__ import annotations

import logging
from functools import singledispatchmethod
from typing import Iterable

from contracts import agent as agent_ev
from contracts import quota as quota_ev
from contracts.quota import QuotaScope
from contracts import session as session_ev
from contracts.envelope import Event
from contracts.slots import add_slots, subtract_slots
from contracts.status import AgentStatus, SessionStatus
from domain import agent as agent_domain
from domain.agent import AgentState
from domain.quota import QuotaState
from domain.scheduling.model import AgentView, ClusterView, KernelRequest, PendingReason, PendingSession, Usage
from services.scheduler.dependencies import Dependencies, session_outcome
from services.scheduler.snapshot_state import PendingState, QuotaUsage, SnapshotState
from services.scheduler.tenancy_view import TENANCY_EVENTS, TenancyView

__all__ = ["SNAPSHOT_EVENTS", "Snapshot"]

log = logging.getLogger(__name__)

SNAPSHOT_EVENTS: tuple[type[Event], ...] = (
    session_ev.SessionRequested,
    session_ev.SessionScheduled,
    session_ev.SessionStatusChanged,
    session_ev.SessionPendingReasonChanged,
    agent_ev.AgentRegistered,
    agent_ev.AgentCapacityChanged,
    agent_ev.KernelAssigned,
    agent_ev.KernelTerminationRequested,
    agent_ev.KernelReleased,
    agent_ev.OrphanContainerDestroyed,
    agent_ev.AgentLost,
    agent_ev.AgentRecovered,
    quota_ev.QuotaConsumed,
    quota_ev.QuotaReleased,
    *TENANCY_EVENTS,
)
"""The events the snapshot is built from (``flow.SNAPSHOT`` derives its subjects from them)."""

_MAY_ENABLE = (
    agent_ev.AgentRegistered,
    agent_ev.AgentCapacityChanged,
    agent_ev.KernelReleased,
    agent_ev.AgentRecovered,
)
"""Events after which a pending session may fit."""

class _Quota:
    """Usage of one quota scope, kept incrementally: with thousands of sessions holding
    quota, copying or summing the holdings at every event or pass would be quadratic."""

    __slots__ = ("scope", "name", "version", "holding", "used")

    def __init__(self, scope: QuotaScope, name: str) -> None:
        self.scope = scope
        self.name = name
        self.version = 0
        self.holding: dict[str, dict] = {}
        self.used: dict = {}


class _Pending:
    __slots__ = ("request", "reason")

    def __init__(self, request: PendingSession, reason: PendingReason | None = None) -> None:
        self.request = request
        self.reason = reason


class Snapshot:
    """Pending sessions in request order, agents, quota usage and tenancy limits."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._dependencies = Dependencies()
        self._agents: dict[str, AgentState] = {}
        self._agent_views: dict[str, AgentView] = {}
        self._quotas: dict[str, _Quota] = {}
        self.tenancy = TenancyView()

    # ------------------------------------------------------------ reads

    def pending(self) -> list[PendingSession]:
        """Returns the pending sessions, oldest request first."""
        return [p.request for p in self._pending.values()]

    def pending_version(self, session_id: str) -> int | None:
        """Returns the version of a pending session's aggregate the snapshot knows (None: not pending)."""
        return self._versions.get(session_id) if session_id in self._pending else None

    def reason(self, session_id: str) -> PendingReason | None:
        """Returns the last pending reason recorded for a pending session."""
        entry = self._pending.get(session_id)
        return entry.reason if entry is not None else None

    def agent(self, agent_id: str) -> AgentState | None:
        return self._agents.get(agent_id)

    def quota(self, quota_id: str) -> QuotaState | None:
        """Returns the usage of one quota scope as a ``domain.quota`` state (sharing, not copying, its holdings)."""
        quota = self._quotas.get(quota_id)
        if quota is None:
            return None
        return QuotaState(id=quota_id, version=quota.version, scope=quota.scope, name=quota.name, holding=quota.holding)

    def view(self, round_robin: dict[str, int]) -> ClusterView:
        """Returns what a planning pass needs, as immutable values."""
        return ClusterView(
            agents=dict(self._agent_views),
            groups=self.tenancy.groups(),
            keypair_limits=self.tenancy.keypair_limits(),
            project_limits=self.tenancy.project_limits(),
            domain_limits=self.tenancy.domain_limits(),
            usage={(q.scope, q.name): Usage(slots=q.used, sessions=len(q.holding)) for q in self._quotas.values()},
            finished=self._dependencies.outcomes(),
            round_robin=dict(round_robin),
        )

    def export(self) -> SnapshotState:
        """Returns everything it holds as values (for a checkpoint; ``restore`` takes it back)."""
        return SnapshotState(
            versions=dict(self._versions),
            pending=[PendingState(request=p.request, reason=p.reason) for p in self._pending.values()],
            finished=self._dependencies.outcomes(),
            agents=list(self._agents.values()),
            quotas=[QuotaUsage(id=quota_id, version=q.version, scope=q.scope, name=q.name,
                               holding={s: dict(slots) for s, slots in q.holding.items()}, used=dict(q.used))
                    for quota_id, q in self._quotas.items()],
            tenancy=self.tenancy.export(),
        )

    @classmethod
    def restore(cls, state: SnapshotState) -> Snapshot:
        """Returns a snapshot holding what ``export`` returned ``state`` of."""
        snapshot = cls()
        snapshot._versions = dict(state.versions)
        for entry in state.pending:
            snapshot._pending[entry.request.session_id] = _Pending(entry.request, entry.reason)
        snapshot._dependencies = Dependencies.restore((p.request.dependencies for p in state.pending), state.finished,
                                                      snapshot._pending.__contains__)
        for agent in state.agents:
            snapshot._agents[agent.id] = agent
            snapshot._agent_views[agent.id] = _agent_view(agent)
        for usage in state.quotas:
            quota = snapshot._quotas[usage.id] = _Quota(usage.scope, usage.name)
            quota.version = usage.version
            quota.holding = {s: dict(slots) for s, slots in usage.holding.items()}
            quota.used = dict(usage.used)
        snapshot.tenancy = TenancyView.restore(state.tenancy)
        return snapshot

    def unresolved_dependencies(self) -> set[str]:
        """Returns the dependencies of pending sessions whose outcome the store must tell (``resolve``)."""
        return self._dependencies.unresolved()

    def resolve(self, outcomes: dict[str, bool | None]) -> None:
        """Takes how unresolved dependencies finished (None: not finished), as the store says."""
        self._dependencies.resolve(outcomes)

    # ------------------------------------------------------------ writes

    def apply(self, event: Event) -> bool:
        """Applies one event (from the stream, the store or the scheduler's own writes);
        returns True when it may allow a placement. Events the snapshot already has are skipped."""
        aggregate = event.originator_id
        known = self._versions.get(aggregate, 0)
        if event.originator_version <= known:
            return False
        self._versions[aggregate] = event.originator_version
        try:
            return self._apply(event)
        except Exception:  # not applied: the follow delivers it again, and it must not be skipped then
            if known:
                self._versions[aggregate] = known
            else:
                del self._versions[aggregate]
            raise

    def knows(self, event: Event) -> bool:
        """Returns True when the snapshot counts ``event`` as applied already (``apply`` would skip it)."""
        return event.originator_version <= self._versions.get(event.originator_id, 0)

    def forget(self, aggregate_ids: Iterable[str]) -> None:
        """Drops what the snapshot knows of some aggregates, before reloading them from the store."""
        for aggregate in aggregate_ids:
            self._versions.pop(aggregate, None)
            self._drop_pending(aggregate)
            self._agents.pop(aggregate, None)
            self._agent_views.pop(aggregate, None)
            self._quotas.pop(aggregate, None)

    @singledispatchmethod
    def _apply(self, event: Event) -> bool:
        return self.tenancy.apply(event)

    @_apply.register
    def _(self, event: session_ev.SessionRequested) -> bool:
        request = _request(event)
        self._pending[event.originator_id] = _Pending(request)
        self._dependencies.want(request.dependencies, self._pending.__contains__)
        return True

    @_apply.register
    def _(self, event: session_ev.SessionPendingReasonChanged) -> bool:
        entry = self._pending.get(event.originator_id)
        if entry is not None:
            entry.reason = PendingReason(code=event.code, message=event.message)
        return self._session_moved(event)

    @_apply.register
    def _(self, event: session_ev.SessionScheduled) -> bool:
        self._drop_pending(event.originator_id)
        return self._session_moved(event)

    @_apply.register
    def _(self, event: session_ev.SessionStatusChanged) -> bool:
        if event.status is not SessionStatus.PENDING:
            self._drop_pending(event.originator_id)
        return self._session_moved(event)

    def _session_moved(self, event: Event) -> bool:
        """Forgets the version of a session no longer pending and keeps how it finished for the sessions
        that depend on it; returns True when that may allow a placement."""
        if event.originator_id not in self._pending:  # placed or over: nothing more to order
            self._versions.pop(event.originator_id, None)
        ok = session_outcome(event)
        if ok is not None:
            self._dependencies.finished(event.originator_id, ok)
            return True  # a dependency may be met or its failure known, a session ahead in the queue gone
        return False

    def _drop_pending(self, session_id: str) -> None:
        entry = self._pending.pop(session_id, None)
        if entry is not None:
            self._dependencies.release(entry.request.dependencies)

    @_apply.register(agent_ev.AgentRegistered)
    @_apply.register(agent_ev.AgentCapacityChanged)
    @_apply.register(agent_ev.KernelAssigned)
    @_apply.register(agent_ev.KernelTerminationRequested)
    @_apply.register(agent_ev.KernelReleased)
    @_apply.register(agent_ev.OrphanContainerDestroyed)
    @_apply.register(agent_ev.AgentLost)
    @_apply.register(agent_ev.AgentRecovered)
    def _(self, event: Event) -> bool:
        agent = agent_domain.evolve(self._agents.get(event.originator_id), event)
        self._agents[agent.id] = agent
        self._agent_views[agent.id] = _agent_view(agent)
        return isinstance(event, _MAY_ENABLE)

    @_apply.register
    def _(self, event: quota_ev.QuotaConsumed) -> bool:
        quota = self._quotas.setdefault(event.originator_id, _Quota(event.scope, event.name))
        quota.version = event.originator_version
        for session_id, slots in event.allocations.items():
            quota.holding[session_id] = dict(slots)
            quota.used = add_slots(quota.used, slots)
        return False

    @_apply.register
    def _(self, event: quota_ev.QuotaReleased) -> bool:
        quota = self._quotas.setdefault(event.originator_id, _Quota(event.scope, event.name))
        quota.version = event.originator_version
        if quota.holding.pop(event.session_id, None) is not None:
            quota.used = subtract_slots(quota.used, event.slots)
        return True


def _request(event: session_ev.SessionRequested) -> PendingSession:
    spec = event.spec
    return PendingSession(
        session_id=event.originator_id,
        owner=event.owner,
        domain=spec.domain,
        project=spec.project,
        resource_group=spec.resource_group,
        kernels=tuple(KernelRequest(kernel_id=k.kernel_id, slots=dict(k.slots)) for k in spec.kernels),
        requested_at=event.timestamp,
        session_type=spec.session_type,
        priority=spec.priority,
        cluster_mode=spec.cluster_mode,
        starts_at=spec.starts_at,
        dependencies=tuple(spec.dependencies),
        designated_agents=tuple(spec.designated_agents),
    )


def _agent_view(agent: AgentState) -> AgentView:
    return AgentView(
        agent_id=agent.id,
        resource_group=agent.resource_group,
        capacity=agent.capacity,
        occupied=agent.occupied,
        alive=agent.status is AgentStatus.ALIVE,
        kernel_count=len(agent.allocations),
    )

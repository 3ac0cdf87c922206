"""The Agent aggregate: capacity, kernel allocations and liveness."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import singledispatch

import msgspec

from contracts import agent as ev
from contracts import commands as c
from contracts.envelope import Event
from contracts.slots import SlotError, add_slots, fits, parse_slots, subtract_slots, sum_slots
from contracts.status import AgentStatus
from contracts.subjects import SubjectError, check_token
from domain.emitting import Context, Emitter
from domain.report_rate import next_due, over_rate
from domain.errors import InsufficientCapacityError, InvalidRequestError, InvalidTransitionError, NotFoundError

__all__ = ["CAPACITY_BURST", "CAPACITY_INTERVAL", "ORPHAN_BURST", "ORPHAN_INTERVAL", "AgentState", "Allocation",
           "decide", "evolve", "replay"]

# What an agent reports is recorded at a bounded rate (``domain.report_rate``: the state keeps when the next event is
# due; a report beyond ``burst`` at once, or over one per ``interval`` on average, is over it): an orphan is refused,
# a capacity change not recorded, the registration otherwise applied, so that a lost agent still recovers. Before,
# only an honest agent's own habits bounded them, and an agent's credential could have the controller record events
# as fast as it took its reports (the event store grew without bound), or flap its capacity (each change a
# scheduling pass over every pending session).
ORPHAN_INTERVAL = dt.timedelta(seconds=1)
ORPHAN_BURST = 1024
"""``OrphanContainerDestroyed``: an agent back from a long absence destroys every orphan at once (a node runs tens of
kernels; ``contracts.reports.MAX_HEARTBEAT_KERNELS``), then one a second."""
CAPACITY_INTERVAL = dt.timedelta(minutes=1)
CAPACITY_BURST = 5
"""``AgentCapacityChanged``: an agent registers at its start; its capacity changes with its host or its settings."""


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    slots: dict[str, Decimal]
    terminating: bool = False


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    version: int
    capacity: dict[str, Decimal]
    backend: str
    hostname: str
    resource_group: str = "default"
    status: AgentStatus = AgentStatus.ALIVE
    allocations: dict[str, Allocation] = {}
    occupied_slots: dict[str, Decimal] | None = None
    """The allocations' slots summed, kept as kernels are assigned and released (an agent's every
    event used to sum all its allocations again: 64 % of the scheduler's CPU with 200 kernels on
    each agent). None in a state saved before it was kept: summed once, at the next change."""
    capacity_due: dt.datetime | None = None
    orphans_due: dt.datetime | None = None
    """When its next ``AgentCapacityChanged`` / ``OrphanContainerDestroyed`` is due at the rate allowed (None before
    the first, and in a state saved before it was kept)."""

    @property
    def occupied(self) -> dict[str, Decimal]:
        if self.occupied_slots is not None:
            return self.occupied_slots
        return sum_slots(a.slots for a in self.allocations.values())

    @property
    def free(self) -> dict[str, Decimal]:
        return subtract_slots(self.capacity, self.occupied)


def evolve(state: AgentState | None, event: Event) -> AgentState:
    """Returns the state after ``event``."""
    return _apply(event, state)


def replay(events: list[Event]) -> AgentState | None:
    """Returns the state after all ``events`` (None when there are none)."""
    state: AgentState | None = None
    for event in events:
        state = evolve(state, event)
    return state


@singledispatch
def _apply(event: Event, state: AgentState | None) -> AgentState:
    raise TypeError(f"Agent cannot apply {type(event).__name__}")


def _bump(state: AgentState | None, event: Event, **changes: object) -> AgentState:
    assert state is not None, f"{type(event).__name__} before agent.registered"
    return msgspec.structs.replace(state, version=event.originator_version, **changes)


@_apply.register
def _(event: ev.AgentRegistered, state: AgentState | None) -> AgentState:
    return AgentState(
        id=event.originator_id,
        version=event.originator_version,
        capacity=dict(event.capacity),
        backend=event.backend,
        hostname=event.hostname,
        resource_group=event.resource_group,
    )


@_apply.register
def _(event: ev.AgentCapacityChanged, state: AgentState) -> AgentState:
    return _bump(state, event, capacity=dict(event.capacity),
                 capacity_due=next_due(state.capacity_due, event.timestamp, CAPACITY_INTERVAL))


@_apply.register
def _(event: ev.KernelAssigned, state: AgentState) -> AgentState:
    allocation = Allocation(session_id=event.session_id, slots=dict(event.slots))
    replaced = state.allocations.get(event.kernel_id)
    occupied = state.occupied if replaced is None else subtract_slots(state.occupied, replaced.slots)
    return _bump(state, event, allocations={**state.allocations, event.kernel_id: allocation},
                 occupied_slots=add_slots(occupied, allocation.slots))


@_apply.register
def _(event: ev.KernelTerminationRequested, state: AgentState) -> AgentState:
    allocation = msgspec.structs.replace(state.allocations[event.kernel_id], terminating=True)
    return _bump(state, event, allocations={**state.allocations, event.kernel_id: allocation})


@_apply.register
def _(event: ev.KernelReleased, state: AgentState) -> AgentState:
    allocations = dict(state.allocations)
    released = allocations.pop(event.kernel_id, None)
    occupied = state.occupied if released is None else subtract_slots(state.occupied, released.slots)
    return _bump(state, event, allocations=allocations, occupied_slots=occupied if allocations else {})


@_apply.register
def _(event: ev.OrphanContainerDestroyed, state: AgentState) -> AgentState:
    return _bump(state, event, orphans_due=next_due(state.orphans_due, event.timestamp, ORPHAN_INTERVAL))


@_apply.register
def _(event: ev.AgentLost, state: AgentState) -> AgentState:
    return _bump(state, event, status=AgentStatus.LOST)


@_apply.register
def _(event: ev.AgentRecovered, state: AgentState) -> AgentState:
    return _bump(state, event, status=AgentStatus.ALIVE)


# ---------------------------------------------------------------- decide


def decide(state: AgentState | None, command: c.Command, ctx: Context, agent_id: str) -> list[Event]:
    """Returns the events that ``command`` causes; raises a ``DomainError`` when refused."""
    return _decide(command, state, ctx, agent_id)


@singledispatch
def _decide(command: c.Command, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    raise TypeError(f"Agent cannot handle {type(command).__name__}")


def _existing(state: AgentState | None, agent_id: str) -> AgentState:
    if state is None:
        raise NotFoundError(f"agent {agent_id} not found")
    return state


@_decide.register
def _(command: c.RegisterAgent, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    try:
        check_token(agent_id, "agent id")
        check_token(command.resource_group, "resource group")  # as a session's; an agent's own report names it
        capacity = parse_slots(command.capacity)
    except (SubjectError, SlotError) as exc:
        raise InvalidRequestError(str(exc)) from exc
    if state is None:
        emit = Emitter(agent_id, 0, ctx)
        return [
            emit(
                ev.AgentRegistered, capacity=capacity, backend=command.backend, hostname=command.hostname,
                resource_group=command.resource_group,
            )
        ]
    emit = Emitter(agent_id, state.version, ctx)
    events: list[Event] = []
    if capacity != state.capacity and not over_rate(state.capacity_due, ctx.now, CAPACITY_INTERVAL, CAPACITY_BURST):
        events.append(emit(ev.AgentCapacityChanged, capacity=capacity))  # over the rate: its capacity stays as it was
    if state.status is AgentStatus.LOST:  # the registration still counts: a lost agent is back
        events.append(emit(ev.AgentRecovered))
    return events


@_decide.register
def _(command: c.AssignKernel, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    state = _existing(state, agent_id)
    if command.kernel_id in state.allocations:
        return []
    if state.status is not AgentStatus.ALIVE:
        raise InvalidTransitionError(f"agent {agent_id} is {state.status.value}")
    if not fits(command.slots, state.free):
        raise InsufficientCapacityError(f"agent {agent_id} cannot hold {command.slots}; free {state.free}")
    return [
        Emitter(agent_id, state.version, ctx)(
            ev.KernelAssigned,
            kernel_id=command.kernel_id,
            session_id=command.session_id,
            image=command.image,
            slots=dict(command.slots),
            cluster_role=command.cluster_role,
            startup_command=command.startup_command,
            mounts=list(command.mounts),
        )
    ]


@_decide.register
def _(command: c.RequestKernelTermination, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    state = _existing(state, agent_id)
    allocation = state.allocations.get(command.kernel_id)
    if allocation is None or allocation.terminating:
        return []
    return [
        Emitter(agent_id, state.version, ctx)(
            ev.KernelTerminationRequested,
            kernel_id=command.kernel_id,
            session_id=allocation.session_id,
            reason=command.reason,
        )
    ]


@_decide.register
def _(command: c.ReleaseKernel, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    state = _existing(state, agent_id)
    allocation = state.allocations.get(command.kernel_id)
    if allocation is None:
        return []
    return [
        Emitter(agent_id, state.version, ctx)(
            ev.KernelReleased, kernel_id=command.kernel_id, session_id=allocation.session_id
        )
    ]


@_decide.register
def _(command: c.MarkAgentLost, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    state = _existing(state, agent_id)
    if state.status is AgentStatus.LOST:
        return []
    return [Emitter(agent_id, state.version, ctx)(ev.AgentLost, last_seen=command.last_seen)]


@_decide.register
def _(command: c.MarkAgentRecovered, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    state = _existing(state, agent_id)
    if state.status is AgentStatus.ALIVE:
        return []
    return [Emitter(agent_id, state.version, ctx)(ev.AgentRecovered)]


@_decide.register
def _(command: c.RecordOrphanDestroyed, state: AgentState | None, ctx: Context, agent_id: str) -> list[Event]:
    state = _existing(state, agent_id)
    allocation = state.allocations.get(command.kernel_id)
    if allocation is not None and not allocation.terminating:
        raise InvalidRequestError(f"kernel {command.kernel_id} is assigned to agent {agent_id}: not an orphan")
    if over_rate(state.orphans_due, ctx.now, ORPHAN_INTERVAL, ORPHAN_BURST):
        raise InvalidRequestError(f"agent {agent_id} reports more than {ORPHAN_BURST} orphans at once or one every "
                                  f"{ORPHAN_INTERVAL.total_seconds():g} s: refused")
    return [Emitter(agent_id, state.version, ctx)(ev.OrphanContainerDestroyed, kernel_id=command.kernel_id,
                                                  container_id=command.container_id, exit_code=command.exit_code)]

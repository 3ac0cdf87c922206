"""Table tests of the Agent aggregate: capacity, allocations and liveness."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import commands as c
from contracts.envelope import Event, Metadata
from contracts.status import AgentStatus, Reason
from domain import agent as a
from domain.emitting import Context
from domain.errors import InsufficientCapacityError, InvalidRequestError, InvalidTransitionError, NotFoundError

AID = "a1"
GIB = Decimal(1024**3)


def ctx() -> Context:
    counter = itertools.count(1)
    return Context(
        now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        metadata=Metadata(actor="test", correlation_id="corr"),
        new_id=lambda: uuid.UUID(int=next(counter)),
    )


def run(state: a.AgentState | None, command: c.Command, agent_id: str = AID) -> tuple[a.AgentState | None, list[Event]]:
    events = a.decide(state, command, ctx(), agent_id)
    for event in events:
        state = a.evolve(state, event)
    return state, events


def types(events: list[Event]) -> list[str]:
    return [type(e).type_name() for e in events]


def register(cpu: str = "4", mem: str = "8g") -> c.RegisterAgent:
    return c.RegisterAgent(capacity={"cpu": cpu, "mem": mem}, backend="simulated", hostname="h")  # type: ignore[dict-item]


def assign(kernel_id: str = "k1", cpu: int = 1, mem: Decimal = GIB, session_id: str = "s1") -> c.AssignKernel:
    return c.AssignKernel(
        kernel_id=kernel_id, session_id=session_id, image="img", slots={"cpu": Decimal(cpu), "mem": mem}
    )


def registered() -> a.AgentState:
    state, _ = run(None, register())
    assert state is not None
    return state


def test_register_parses_capacity() -> None:
    state, events = run(None, register())
    assert types(events) == ["agent.registered"]
    assert state is not None
    assert state.capacity == {"cpu": Decimal(4), "mem": 8 * GIB}
    assert (state.status, state.allocations, state.free) == (AgentStatus.ALIVE, {}, state.capacity)


def test_register_again_changes_only_what_differs() -> None:
    state = registered()
    assert a.decide(state, register(), ctx(), AID) == []
    state2, events = run(state, register(cpu="8"))
    assert types(events) == ["agent.capacity_changed"]
    assert state2 is not None and state2.capacity["cpu"] == Decimal(8)


def test_register_of_lost_agent_recovers_it() -> None:
    state, _ = run(registered(), c.MarkAgentLost(last_seen=1.0))
    state, events = run(state, register())
    assert types(events) == ["agent.recovered"]
    assert state is not None and state.status is AgentStatus.ALIVE


@pytest.mark.parametrize(
    ("agent_id", "command"),
    [
        (AID, c.RegisterAgent(capacity={"gpu": Decimal(1)}, backend="b", hostname="h")),
        (AID, c.RegisterAgent(capacity={"cpu": Decimal(-1)}, backend="b", hostname="h")),
        (AID, register(mem="lots")),
        ("bad id", register()),
        ("a.b", register()),
    ],
    ids=["unknown-slot", "negative", "unparsable", "space-in-id", "dot-in-id"],
)
def test_bad_registrations_are_refused(agent_id: str, command: c.RegisterAgent) -> None:
    with pytest.raises(InvalidRequestError):
        a.decide(None, command, ctx(), agent_id)


def test_assign_allocates_and_is_idempotent() -> None:
    state, events = run(registered(), assign())
    assert types(events) == ["agent.kernel_assigned"]
    assert state is not None
    assert state.allocations["k1"].slots == {"cpu": Decimal(1), "mem": GIB}
    assert state.free == {"cpu": Decimal(3), "mem": 7 * GIB}
    assert a.decide(state, assign(), ctx(), AID) == []


def test_over_allocation_is_refused() -> None:
    state, _ = run(registered(), assign("k1", cpu=3))
    with pytest.raises(InsufficientCapacityError):
        a.decide(state, assign("k2", cpu=2), ctx(), AID)
    with pytest.raises(InsufficientCapacityError):
        a.decide(state, assign("k2", cpu=1, mem=8 * GIB), ctx(), AID)
    _, events = run(state, assign("k2", cpu=1, mem=7 * GIB))
    assert types(events) == ["agent.kernel_assigned"]


def test_assign_to_lost_agent_is_refused() -> None:
    state, _ = run(registered(), c.MarkAgentLost(last_seen=1.0))
    with pytest.raises(InvalidTransitionError):
        a.decide(state, assign(), ctx(), AID)


def test_release_frees_slots() -> None:
    state, _ = run(registered(), assign("k1", cpu=4))
    state, events = run(state, c.RequestKernelTermination(kernel_id="k1", reason=Reason.USER_REQUESTED))
    assert types(events) == ["agent.kernel_termination_requested"]
    assert state is not None and state.allocations["k1"].terminating
    assert state.free["cpu"] == Decimal(0), "a terminating kernel still holds its slots"
    state, events = run(state, c.ReleaseKernel(kernel_id="k1"))
    assert types(events) == ["agent.kernel_released"]
    assert state is not None
    assert state.allocations == {}
    assert state.free == state.capacity


def test_termination_and_release_are_idempotent() -> None:
    state, _ = run(registered(), assign())
    state, _ = run(state, c.RequestKernelTermination(kernel_id="k1", reason=Reason.USER_REQUESTED))
    assert a.decide(state, c.RequestKernelTermination(kernel_id="k1", reason=Reason.USER_REQUESTED), ctx(), AID) == []
    state, _ = run(state, c.ReleaseKernel(kernel_id="k1"))
    assert a.decide(state, c.ReleaseKernel(kernel_id="k1"), ctx(), AID) == []
    assert a.decide(state, c.RequestKernelTermination(kernel_id="k1", reason=Reason.USER_REQUESTED), ctx(), AID) == []


def test_lost_and_recovered_are_idempotent() -> None:
    state = registered()
    assert a.decide(state, c.MarkAgentRecovered(), ctx(), AID) == []
    state, events = run(state, c.MarkAgentLost(last_seen=12.5))
    assert types(events) == ["agent.lost"]
    assert state is not None and state.status is AgentStatus.LOST
    assert a.decide(state, c.MarkAgentLost(last_seen=13.0), ctx(), AID) == []
    state, events = run(state, c.MarkAgentRecovered())
    assert types(events) == ["agent.recovered"]
    assert state is not None and state.status is AgentStatus.ALIVE
    assert a.decide(state, c.MarkAgentRecovered(), ctx(), AID) == []


def test_versions_follow_the_history() -> None:
    history: list[Event] = []
    state: a.AgentState | None = None
    for command in (register(), assign("k1"), assign("k2"), c.ReleaseKernel(kernel_id="k1")):
        state, events = run(state, command)
        history += events
    assert [e.originator_version for e in history] == [1, 2, 3, 4]
    assert a.replay(history) == state
    assert state is not None and list(state.allocations) == ["k2"]


@pytest.mark.parametrize(
    "command",
    [assign(), c.ReleaseKernel(kernel_id="k1"), c.MarkAgentLost(last_seen=0.0), c.MarkAgentRecovered(),
     c.RequestKernelTermination(kernel_id="k1", reason=Reason.USER_REQUESTED)],
    ids=lambda v: type(v).__name__,
)
def test_unknown_agent_is_not_found(command: c.Command) -> None:
    with pytest.raises(NotFoundError):
        a.decide(None, command, ctx(), AID)


def test_an_orphan_destroyed_is_recorded_unless_its_kernel_is_assigned_here() -> None:
    orphan = c.RecordOrphanDestroyed(kernel_id="k9", container_id="c9", exit_code=137)
    state, events = run(registered(), orphan)
    assert types(events) == ["agent.orphan_container_destroyed"]
    assert (events[0].kernel_id, events[0].reason) == ("k9", Reason.ORPHANED)  # type: ignore[attr-defined]
    assert state is not None and state.allocations == {}
    assigned, _ = run(registered(), assign("k9"))
    with pytest.raises(InvalidRequestError, match="not an orphan"):
        run(assigned, orphan)


@given(st.lists(st.tuples(st.sampled_from(["assign", "terminate", "release"]), st.integers(0, 4), st.integers(1, 3)),
                max_size=40))
def test_occupancy_kept_incrementally_is_the_sum_of_the_allocations(steps: list[tuple[str, int, int]]) -> None:
    state = registered()
    state, _ = run(state, c.RegisterAgent(capacity={"cpu": "1000", "mem": "1000g"}, backend="simulated",  # type: ignore[dict-item]
                                          hostname="h"))
    for step, kernel, cpu in steps:
        kernel_id = f"k{kernel}"
        command: c.Command = {
            "assign": assign(kernel_id, cpu=cpu, session_id=f"s{kernel}"),
            "terminate": c.RequestKernelTermination(kernel_id=kernel_id, reason=Reason.USER_REQUESTED),
            "release": c.ReleaseKernel(kernel_id=kernel_id),
        }[step]
        try:
            state, _ = run(state, command)
        except (InvalidRequestError, InvalidTransitionError, NotFoundError, InsufficientCapacityError):
            continue
        assert state is not None
        summed = msgspec.structs.replace(state, occupied_slots=None).occupied
        assert state.occupied == summed, steps


def test_a_state_saved_before_occupancy_was_kept_sums_it_once() -> None:
    state, _ = run(registered(), assign("k1", cpu=2))
    older = msgspec.json.decode(msgspec.json.encode(state).replace(b'"occupied_slots"', b'"_gone"'), type=a.AgentState)
    assert older.occupied_slots is None and older.occupied == {"cpu": Decimal(2), "mem": GIB}
    later, _ = run(older, assign("k2", cpu=1, session_id="s2"))
    assert later is not None and later.occupied_slots == {"cpu": Decimal(3), "mem": 2 * GIB}

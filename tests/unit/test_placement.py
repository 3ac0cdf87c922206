"""Table tests and a Hypothesis property of the placeholder first-fit placement."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.slots import add_slots
from contracts.status import AgentStatus
from domain.placement import AgentView, PendingSession, first_fit


def slots(cpu: int, mem: int = 1) -> dict[str, Decimal]:
    return {"cpu": Decimal(cpu), "mem": Decimal(mem)}


def session(session_id: str, *cpus: int) -> PendingSession:
    return PendingSession(
        session_id=session_id,
        kernels=tuple((f"{session_id}-k{i}", slots(cpu)) for i, cpu in enumerate(cpus or (1,))),
    )


def agent(agent_id: str, cpu: int, mem: int = 100, status: AgentStatus = AgentStatus.ALIVE) -> AgentView:
    return AgentView(agent_id=agent_id, free=slots(cpu, mem), status=status)


def placed_on(plan, session_id: str) -> set[str]:
    return {p.agent_id for p in plan.placements[session_id]}


def test_places_a_session_that_fits() -> None:
    plan = first_fit([session("s1", 2)], [agent("a1", 4)])
    assert [(p.kernel_id, p.agent_id) for p in plan.placements["s1"]] == [("s1-k0", "a1")]
    assert plan.pending_reasons == {}


def test_session_that_fits_nowhere_stays_pending_with_a_reason() -> None:
    plan = first_fit([session("s1", 8)], [agent("a1", 4), agent("a2", 2)])
    assert plan.placements == {}
    assert plan.pending_reasons == {"s1": "no agent has enough free slots"}


def test_memory_counts_as_well_as_cpu() -> None:
    plan = first_fit([PendingSession(session_id="s1", kernels=(("k", slots(1, 200)),))], [agent("a1", 4, mem=100)])
    assert "s1" in plan.pending_reasons


def test_skips_lost_agents() -> None:
    plan = first_fit([session("s1", 1)], [agent("dead", 8, status=AgentStatus.LOST), agent("a2", 2)])
    assert placed_on(plan, "s1") == {"a2"}


def test_no_alive_agent_is_its_own_reason() -> None:
    plan = first_fit([session("s1", 1)], [agent("dead", 8, status=AgentStatus.LOST)])
    assert plan.pending_reasons == {"s1": "no agent is alive"}
    assert first_fit([session("s1", 1)], []).pending_reasons == {"s1": "no agent is alive"}


def test_first_come_first_served() -> None:
    plan = first_fit([session("old", 3), session("new", 3)], [agent("a1", 4)])
    assert list(plan.placements) == ["old"]
    assert list(plan.pending_reasons) == ["new"]


def test_later_small_session_may_use_what_is_left() -> None:
    plan = first_fit([session("big", 3), session("huge", 9), session("small", 1)], [agent("a1", 4)])
    assert set(plan.placements) == {"big", "small"}
    assert set(plan.pending_reasons) == {"huge"}


def test_sessions_consume_capacity_across_agents() -> None:
    plan = first_fit([session(f"s{i}", 2) for i in range(5)], [agent("a1", 4), agent("a2", 4)])
    assert [placed_on(plan, f"s{i}") for i in range(4)] == [{"a1"}, {"a1"}, {"a2"}, {"a2"}]
    assert set(plan.pending_reasons) == {"s4"}


def test_kernels_of_a_session_stay_together() -> None:
    plan = first_fit([session("s1", 2, 2)], [agent("a1", 3), agent("a2", 4)])
    assert placed_on(plan, "s1") == {"a2"}
    assert [p.kernel_id for p in plan.placements["s1"]] == ["s1-k0", "s1-k1"]


def test_input_is_not_mutated() -> None:
    agents = [agent("a1", 4)]
    first_fit([session("s1", 4)], agents)
    assert agents[0].free == slots(4, 100)


_agents = st.lists(
    st.builds(
        AgentView,
        agent_id=st.just("?"),
        free=st.builds(slots, st.integers(0, 8), st.integers(0, 16)),
        status=st.sampled_from(AgentStatus),
    ),
    max_size=5,
)
_sessions = st.lists(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 8)), min_size=1, max_size=3),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(agents=_agents, requests=_sessions)
def test_never_over_allocates_an_agent(agents: list[AgentView], requests: list[list[tuple[int, int]]]) -> None:
    agents = [AgentView(agent_id=f"a{i}", free=v.free, status=v.status) for i, v in enumerate(agents)]
    pending = [
        PendingSession(
            session_id=f"s{i}", kernels=tuple((f"s{i}-k{j}", slots(cpu, mem)) for j, (cpu, mem) in enumerate(kernels))
        )
        for i, kernels in enumerate(requests)
    ]
    plan = first_fit(pending, agents)

    by_id = {a.agent_id: a for a in agents}
    used: dict[str, dict[str, Decimal]] = {}
    for p in pending:
        assert (p.session_id in plan.placements) != (p.session_id in plan.pending_reasons)
        if p.session_id not in plan.placements:
            continue
        placements = plan.placements[p.session_id]
        assert sorted(x.kernel_id for x in placements) == sorted(k for k, _ in p.kernels)
        (agent_id,) = {x.agent_id for x in placements}
        assert by_id[agent_id].status is AgentStatus.ALIVE
        for _, kernel_slots in p.kernels:
            used[agent_id] = add_slots(used.get(agent_id, {}), kernel_slots)
    for agent_id, total in used.items():
        free = by_id[agent_id].free
        assert all(amount <= free.get(name, Decimal(0)) for name, amount in total.items()), (agent_id, total, free)

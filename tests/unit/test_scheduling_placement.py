"""Table tests of agent selection and sequencing in ``plan``: strategies, single- and
multi-node sessions, designated agents, round-robin cursors, priority, FIFO, LIFO, DRF."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from contracts.quota import QuotaScope
from contracts.status import ClusterMode
from contracts.tenancy import ResourceGroupOptions, SchedulerPolicy, SelectionStrategy
from domain.scheduling import AgentView, ClusterView, KernelRequest, PendingReason, PendingSession, Plan, Usage, plan
from domain.scheduling.demand import demand_of, floor_of
from domain.scheduling.fixedpoint import SlotScale
from domain.scheduling.pool import AgentPool
from domain.scheduling.selection import select

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
GIB = 1024**3
DISPERSED = SelectionStrategy.DISPERSED
CONCENTRATED = SelectionStrategy.CONCENTRATED
ROUNDROBIN = SelectionStrategy.ROUNDROBIN
MULTI = ClusterMode.MULTI_NODE


def slots(cpu: int | str = 0, mem: int = 0) -> dict[str, Decimal]:
    return {"cpu": Decimal(str(cpu)), "mem": Decimal(mem * GIB)}


def agent(agent_id: str, cpu: int = 8, mem: int = 32, *, used: tuple = (0, 0)) -> AgentView:
    return AgentView(agent_id=agent_id, resource_group="default", capacity=slots(cpu, mem), occupied=slots(*used))


def session(session_id: str, *kernels: tuple[int, int], age: int = 0, **kw: Any) -> PendingSession:
    """A session of ``kernels`` (cpu, mem GiB), requested ``age`` seconds before the others."""
    base: dict[str, Any] = dict(owner="ak1", domain="d1", project="p1", resource_group="default")
    base.update(kw)
    return PendingSession(
        session_id=session_id,
        kernels=tuple(KernelRequest(kernel_id=f"{session_id}-k{i}", slots=slots(c, m))
                      for i, (c, m) in enumerate(kernels or ((1, 1),))),
        requested_at=NOW - dt.timedelta(seconds=1000 + age),
        **base,
    )


def run(agents: list[AgentView], sessions: list[PendingSession], strategy: SelectionStrategy = DISPERSED,
        scheduler: SchedulerPolicy = SchedulerPolicy.FIFO, **kw: Any) -> Plan:
    groups = {"default": ResourceGroupOptions(agent_selection=strategy, scheduler=scheduler)}
    return plan(ClusterView(agents={a.agent_id: a for a in agents}, groups=groups, **kw), sessions, NOW)


def where(result: Plan) -> dict[str, tuple[str, ...]]:
    return {p.session_id: tuple(agent_id for _, agent_id in p.kernels) for p in result.placements}


def order(result: Plan) -> list[str]:
    return [p.session_id for p in result.placements]


STRATEGY_ROWS = [
    # (name, strategy, agents, expected agent for one 1-cpu session)
    ("dispersed: lowest utilisation", DISPERSED, [agent("a1", used=(4, 0)), agent("a2", used=(2, 0))], "a2"),
    ("dispersed: then largest capacity", DISPERSED, [agent("a1", 8), agent("a2", 16)], "a2"),
    ("dispersed: then agent id", DISPERSED, [agent("b", 8), agent("a", 8)], "a"),
    ("concentrated: highest utilisation", CONCENTRATED, [agent("a1", used=(2, 0)), agent("a2", used=(4, 0))], "a2"),
    ("concentrated: then smallest capacity", CONCENTRATED, [agent("a1", 16), agent("a2", 8)], "a2"),
    ("concentrated: then agent id", CONCENTRATED, [agent("b", 8), agent("a", 8)], "a"),
    ("concentrated: skips the full agent", CONCENTRATED, [agent("a1", used=(8, 0)), agent("a2", used=(1, 0))], "a2"),
    # Utilisation is the dominant (max) share: a1 is 50% on cpu (mean 25%), a2 is 30% on both.
    ("utilisation is the max over slots", DISPERSED,
     [agent("a1", 10, 10, used=(5, 0)), agent("a2", 10, 10, used=(3, 3))], "a2"),
]


@pytest.mark.parametrize(("name", "strategy", "agents", "expected"), STRATEGY_ROWS, ids=[r[0] for r in STRATEGY_ROWS])
def test_strategy_picks(name: str, strategy: SelectionStrategy, agents: list[AgentView], expected: str) -> None:
    assert where(run(agents, [session("s1")], strategy)) == {"s1": (expected,)}


def test_dispersed_spreads_and_concentrated_packs() -> None:
    agents = [agent("a1", 4), agent("a2", 4)]
    sessions = [session(f"s{i}", age=-i) for i in range(4)]
    assert list(where(run(agents, sessions, DISPERSED)).values()) == [("a1",), ("a2",), ("a1",), ("a2",)]
    assert list(where(run(agents, sessions, CONCENTRATED)).values()) == [("a1",)] * 4


def test_round_robin_starts_at_the_cursor_and_returns_the_next_one() -> None:
    agents = [agent("a1"), agent("a2"), agent("a3")]
    sessions = [session(f"s{i}", age=-i) for i in range(4)]
    result = run(agents, sessions, ROUNDROBIN, round_robin={"default": 1, "other": 7})
    assert list(where(result).values()) == [("a2",), ("a3",), ("a1",), ("a2",)]
    assert result.round_robin == {"default": 2, "other": 7}


def test_round_robin_skips_agents_without_room() -> None:
    agents = [agent("a1"), agent("a2", used=(8, 0)), agent("a3")]
    result = run(agents, [session("s1"), session("s2", age=-1)], ROUNDROBIN, round_robin={"default": 1})
    assert list(where(result).values()) == [("a3",), ("a1",)]
    assert result.round_robin == {"default": 1}


def test_single_node_puts_every_kernel_on_one_agent_with_room_for_the_sum() -> None:
    result = run([agent("a1", 4), agent("a2", 8, used=(2, 0))], [session("s1", (3, 1), (3, 1))])
    assert where(result) == {"s1": ("a2", "a2")}
    assert run([agent("a1", 4), agent("a2", 4)], [session("s1", (3, 1), (3, 1))]).pending["s1"].code == "too-large"
    busy = run([agent("a1", 4), agent("a2", 8, used=(3, 0))], [session("s1", (3, 1), (3, 1))])
    assert busy.pending["s1"].code == "no-agent"


def test_multi_node_with_a_kernel_larger_than_every_agent_is_too_large_and_does_not_block() -> None:
    # Every kernel but the second fits some agent; the second fits none, even empty.
    agents = [agent("a1", 4), agent("a2", 4, used=(2, 0))]
    gang = session("gang", (1, 1), (5, 1), (1, 1), cluster_mode=MULTI, age=1)
    result = run(agents, [gang, session("small", (1, 1))], ROUNDROBIN, round_robin={"default": 1})
    assert result.pending["gang"].code == "too-large"
    assert result.pending["gang"].message.startswith("no agent in resource group 'default' can ever hold ")
    assert where(result) == {"small": ("a2",)}
    assert result.round_robin == {"default": 0}


def test_multi_node_that_fits_empty_agents_but_finds_no_room_blocks_the_line() -> None:
    agents = [agent("a1", 4, used=(2, 0)), agent("a2", 4, used=(2, 0))]
    gang = session("gang", (3, 1), (3, 1), cluster_mode=MULTI, age=1)
    result = run(agents, [gang, session("small", (1, 1))])
    assert {sid: r.code for sid, r in result.pending.items()} == {"gang": "no-agent", "small": "head-of-line"}
    assert result.placements == []


def test_multi_node_spreads_kernels_over_agents() -> None:
    result = run([agent("a1", 4), agent("a2", 4)], [session("s1", (3, 1), (3, 1), cluster_mode=MULTI)])
    assert where(result) == {"s1": ("a1", "a2")}


def test_multi_node_may_put_several_kernels_on_one_agent() -> None:
    result = run([agent("a1", 8), agent("a2", 2)], [session("s1", (3, 1), (3, 1), (2, 1), cluster_mode=MULTI)])
    assert where(result) == {"s1": ("a1", "a1", "a2")}


def test_multi_node_is_all_or_nothing_and_rolls_back_the_round_robin_cursor() -> None:
    # Tentatively a1, a2, a3, a2 (cursor at 2), then the fifth kernel finds no room.
    gang = session("gang", *[(4, 1)] * 5, cluster_mode=MULTI)
    result = run([agent("a1", 4), agent("a2", 8), agent("a3", 4)], [gang], ROUNDROBIN, round_robin={"default": 0})
    assert result.placements == []
    assert result.pending["gang"].code == "no-agent"
    assert result.pending["gang"].message == (
        "no room in resource group 'default' for all 5 kernels of this multi-node session: "
        "no agent has 4 cpu, 1 GiB mem free for kernel 'gang-k4'"
    )
    assert result.round_robin == {"default": 0}


def test_a_failed_gang_gives_back_every_tentative_allocation() -> None:
    # In a plan, head-of-line hides what a failed gang leaves behind, so look at the pool itself.
    agents = [agent("a1", 4), agent("a2", 6)]
    gang = session("gang", (4, 1), (4, 1), (4, 1), cluster_mode=MULTI)
    scale = SlotScale.covering([a.capacity for a in agents] + [k.slots for k in gang.kernels])
    demand = demand_of(gang, scale)
    pool = AgentPool(agents, scale, DISPERSED, 0, floor_of([demand], scale.size))
    before = [list(free) for free in pool.free]
    outcome = select(demand, pool, "default", scale)
    assert isinstance(outcome, PendingReason) and outcome.code == "no-agent"
    assert pool.free == before
    assert pool.find(demand.kernels[0]) == 1
    assert select(demand_of(session("one", (6, 1)), scale), pool, "default", scale) == (("one-k0", "a2"),)


def test_designated_agents_restrict_the_choice() -> None:
    agents = [agent("a1"), agent("a2", 16), agent("a3", used=(6, 0))]
    result = run(agents, [session("s1", (2, 1), designated_agents=("a3", "a1"))])
    assert where(result) == {"s1": ("a1",)}


@pytest.mark.parametrize(
    ("designated", "request_cpu", "code", "message"),
    [
        (("ghost",), 1, "designated-agent",
         "none of the designated agents (ghost) is an alive agent of resource group 'default'"),
        (("a1",), 16, "designated-agent",
         "none of the designated agents (a1) can ever hold 16 cpu, 1 GiB mem (capacity too small)"),
        (("a2", "a1"), 4, "no-agent", "none of the designated agents (a1, a2) has 4 cpu, 1 GiB mem free"),
    ],
)
def test_designated_agent_refusals(designated: tuple[str, ...], request_cpu: int, code: str, message: str) -> None:
    agents = [agent("a1", used=(6, 0)), agent("a2", 4, used=(1, 0)), agent("big", 64)]
    result = run(agents, [session("s1", (request_cpu, 1), designated_agents=designated)])
    assert (result.pending["s1"].code, result.pending["s1"].message) == (code, message)


def test_designated_agent_refusal_does_not_block_the_line() -> None:
    result = run([agent("a1")], [session("s1", designated_agents=("ghost",), age=1), session("s2")])
    assert where(result) == {"s2": ("a1",)}


def test_priority_bands_come_first() -> None:
    sessions = [session("low", age=10, priority=1), session("high", priority=50), session("mid", age=5)]
    assert order(run([agent("a1")], sessions)) == ["high", "mid", "low"]


def test_fifo_and_lifo_within_a_band() -> None:
    sessions = [session("b", age=5), session("a", age=5), session("new", age=0), session("old", age=9)]
    assert order(run([agent("a1")], sessions)) == ["old", "a", "b", "new"]
    assert order(run([agent("a1")], sessions, scheduler=SchedulerPolicy.LIFO)) == ["new", "b", "a", "old"]


def test_drf_serves_the_lowest_dominant_share_first_and_updates_as_it_places() -> None:
    # Group capacity 16 cpu, 64 GiB. ak1 already holds 4 cpu (share 1/4), ak2 holds 24 GiB (3/8),
    # ak3 nothing. ak3 goes first; after 2 of its 4-cpu sessions it holds 8/16 = 1/2 > 1/4.
    usage = {
        (QuotaScope.KEYPAIR, "ak1"): Usage(slots=slots(4, 0)),
        (QuotaScope.KEYPAIR, "ak2"): Usage(slots=slots(0, 24)),
    }
    sessions = [
        session("ak1-a", (1, 1), owner="ak1", age=9),
        session("ak2-a", (1, 1), owner="ak2", age=8),
        session("ak3-a", (4, 1), owner="ak3", age=1),
        session("ak3-b", (4, 1), owner="ak3", age=0),
    ]
    result = run([agent("a1", 8, 32), agent("a2", 8, 32)], sessions, scheduler=SchedulerPolicy.DRF, usage=usage)
    # ak3 (0) -> ak3 at 1/4 ties ak1 at 1/4: the older request (ak1-a) wins -> ak1 at 5/16 ->
    # ak3-b (1/4) -> ak2 (3/8) last.
    assert order(result) == ["ak3-a", "ak1-a", "ak3-b", "ak2-a"]


def test_drf_order_is_per_priority_band() -> None:
    usage = {(QuotaScope.KEYPAIR, "rich"): Usage(slots=slots(8, 0))}
    sessions = [session("poor", owner="poor", priority=1), session("rich", owner="rich", priority=9)]
    result = run([agent("a1", 16)], sessions, scheduler=SchedulerPolicy.DRF, usage=usage)
    assert order(result) == ["rich", "poor"]

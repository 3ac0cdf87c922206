"""StateCache: a load reads only the events since the cached state, never the whole history."""

from __future__ import annotations

from decimal import Decimal

from contracts import commands as c
from domain import agent as agent_domain
from services.application.agents import Agents
from services.application.context import make_context
from services.common.state_cache import StateCache


def _agents_with_history(kernels: int) -> Agents:
    agents = Agents(None)
    ctx = make_context("test")
    agents.handle("a1", c.RegisterAgent(capacity={"cpu": Decimal(1000), "mem": Decimal(10**12)}, backend="sim", hostname="h"), ctx)
    for i in range(kernels):
        agents.handle("a1", c.AssignKernel(kernel_id=f"k{i}", session_id=f"s{i}", image="i", slots={"cpu": Decimal(1)}), ctx)
    return agents


def test_a_load_reads_only_what_changed_since_the_last_one() -> None:
    agents = _agents_with_history(200)
    read: list[int] = []

    def read_after(aggregate_id: str, version: int) -> list:
        events = agents._read_after(aggregate_id, version)
        read.append(len(events))
        return events

    cache = StateCache(read_after)
    first = cache.current("a1", agent_domain.evolve)
    agents.handle("a1", c.AssignKernel(kernel_id="late", session_id="late", image="i", slots={"cpu": Decimal(1)}), make_context("t"))
    second = cache.current("a1", agent_domain.evolve)

    assert read == [201, 1], "the second load read one event, not the 202 of the history"
    assert first is not None and second is not None
    assert second.version == first.version + 1
    assert second == agent_domain.replay(agents.load("a1")), "the same state as a full replay"


def test_the_cache_is_bounded_and_an_evicted_state_is_rebuilt() -> None:
    agents = _agents_with_history(3)
    cache = StateCache(agents._read_after, capacity=1)
    assert cache.current("a1", agent_domain.evolve) is not None
    assert cache.current("nobody", agent_domain.evolve) is None
    assert cache.current("a1", agent_domain.evolve) == agent_domain.replay(agents.load("a1"))


def test_the_applications_use_cases_see_every_change() -> None:
    agents = _agents_with_history(2)
    assert len(agents.get("a1").allocations) == 2  # type: ignore[union-attr]
    agents.handle("a1", c.AssignKernel(kernel_id="k9", session_id="s9", image="i", slots={"cpu": Decimal(1)}), make_context("t"))
    assert len(agents.get("a1").allocations) == 3  # type: ignore[union-attr]


def test_several_cached_states_are_caught_up_with_one_read() -> None:
    agents = _agents_with_history(3)
    ctx = make_context("t")
    agents.handle("a2", c.RegisterAgent(capacity={"cpu": Decimal(8)}, backend="sim", hostname="h2"), ctx)
    agents.handle("a3", c.RegisterAgent(capacity={"cpu": Decimal(2)}, backend="sim", hostname="h3"), ctx)
    reads: list[str] = []
    newer_reads: list[dict] = []

    def read_after(aggregate_id: str, version: int) -> list:
        reads.append(aggregate_id)
        return agents._read_after(aggregate_id, version)

    def read_newer(known: dict) -> list:
        newer_reads.append(dict(known))
        return agents.newer_than(known)

    cache = StateCache(read_after)
    cache.current("a1", agent_domain.evolve)
    cache.current("a2", agent_domain.evolve)
    agents.handle("a1", c.AssignKernel(kernel_id="n1", session_id="n1", image="i", slots={"cpu": Decimal(1)}), ctx)
    agents.handle("a2", c.AssignKernel(kernel_id="n2", session_id="n2", image="i", slots={"cpu": Decimal(1)}), ctx)
    reads.clear()

    states = cache.current_many(["a1", "a2", "a3", "nobody"], agent_domain.evolve, read_newer)

    assert newer_reads == [{"a1": 4, "a2": 1, "a3": 0, "nobody": 0}], \
        "one read for all: the cached from their versions, the others (no snapshot asked) from 0"
    assert reads == [], "none read on its own"
    assert states == {"a1": agent_domain.replay(agents.load("a1")), "a2": agent_domain.replay(agents.load("a2")),
                      "a3": agent_domain.replay(agents.load("a3")), "nobody": None}
    assert cache.current("a1", agent_domain.evolve) == states["a1"]
    assert cache.peek("a3", agent_domain.evolve) == states["a3"], "what the one read built is cached"

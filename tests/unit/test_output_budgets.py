"""A run's output is charged to its own rate, its kernel's and its agent's: the runs of a kernel share its rate,
the kernels of an agent the agent's (32 floods of one tenant at a run's rate each cut the gateway off the bus)."""

from __future__ import annotations

import gc

import pytest

from services.agent.output_rate import OutputBudgets, OutputRate, RunBudget
from tests.unit.test_exec_output_limits import Clock


def test_the_runs_of_a_kernel_share_its_rate() -> None:
    clock = Clock()
    budgets = OutputBudgets(kernel=(1000, 1000), agent=(10_000, 10_000), clock=clock)
    first, second = (budgets.for_run("k1", OutputRate(5000, 5000, clock)) for _ in range(2))
    assert first.take(800) == 0.0
    assert second.take(800) == pytest.approx(0.6), "the second waits for what the first took of the kernel's"
    clock.now += 0.6
    assert first.take(1000) == pytest.approx(1.0)


def test_the_kernels_of_an_agent_share_its_rate_and_a_run_keeps_its_own() -> None:
    clock = Clock()
    budgets = OutputBudgets(kernel=(1000, 1000), agent=(1500, 1500), clock=clock)
    assert budgets.for_run("k1", OutputRate(5000, 5000, clock)).take(1000) == 0.0
    assert budgets.for_run("k2", OutputRate(5000, 5000, clock)).take(1000) == pytest.approx(1 / 3)
    assert budgets.for_run("k3", OutputRate(100, 100, clock)).take(200) == pytest.approx(1.0), "its own rate"


def test_a_kernel_without_runs_streaming_keeps_no_budget() -> None:
    clock = Clock()
    budgets = OutputBudgets(kernel=(1000, 1000), agent=(10**9, 10**9), clock=clock)
    budget = budgets.for_run("k1", OutputRate(5000, 5000, clock))
    assert budget.take(3000) == pytest.approx(2.0)
    del budget
    gc.collect()
    assert budgets.for_run("k1", OutputRate(5000, 5000, clock)).take(1000) == 0.0, "a fresh kernel budget"


def test_a_run_budget_needs_a_rate() -> None:
    with pytest.raises(ValueError):
        RunBudget()

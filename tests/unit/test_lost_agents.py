"""``LostAgents``: a lost agent is due for its sweep once lost for the grace, counted from its
``agent.lost`` event's time; one that comes back before is never due."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from services.controller.agent_lost import LostAgents, sweep_lost_agents
from tests.support.clocks import UtcClock

T0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


class Clock(UtcClock):
    def __init__(self) -> None:
        super().__init__(T0)


def test_a_lost_agent_is_due_once_its_grace_has_passed() -> None:
    clock = Clock()
    lost = LostAgents(60.0, clock)
    assert lost.next_due() is None
    lost.lost("a1", T0)
    clock.advance(10)
    lost.lost("a2", clock.now)
    assert lost.pending() == ["a1", "a2"] and lost.due() == []
    assert lost.next_due() == pytest.approx(50.0)
    clock.advance(50)
    assert lost.due() == ["a1"] and lost.next_due() == 0.0
    lost.swept("a1")
    assert lost.due() == [] and lost.next_due() == pytest.approx(10.0)


def test_the_grace_counts_from_the_loss_not_from_when_it_is_learnt() -> None:
    """A controller restarted long after the loss (it replays ``agent.lost``) does not start the grace again."""
    clock = Clock()
    clock.advance(3600)
    lost = LostAgents(60.0, clock)
    lost.lost("a1", T0)
    assert lost.due() == ["a1"]


def test_an_agent_back_within_the_grace_is_never_due() -> None:
    clock = Clock()
    lost = LostAgents(60.0, clock)
    lost.lost("a1", T0)
    clock.advance(30)
    lost.alive("a1")
    clock.advance(60)
    assert lost.due() == [] and lost.pending() == [] and lost.next_due() is None
    lost.lost("a1", clock.now)  # lost again: a new grace
    assert lost.due() == []


def test_a_repeated_loss_keeps_its_first_time() -> None:
    clock = Clock()
    lost = LostAgents(60.0, clock)
    lost.lost("a1", T0)
    lost.lost("a1", T0 + dt.timedelta(seconds=50))
    clock.advance(60)
    assert lost.due() == ["a1"]


def test_no_grace_is_due_at_once_and_a_negative_one_is_refused() -> None:
    lost = LostAgents(0.0, Clock())
    lost.lost("a1", T0)
    assert lost.due() == ["a1"]
    with pytest.raises(ValueError, match="BERTH_AGENT_LOST_GRACE"):
        LostAgents(-1.0)


async def test_the_sweep_waits_for_the_grace_and_retries_an_unfinished_sweep() -> None:
    clock = Clock()
    lost = LostAgents(60.0, clock)
    stop = asyncio.Event()
    swept: list[str] = []
    answers = iter([False, True])

    async def sweep(agent_id: str) -> bool:
        swept.append(agent_id)
        done = next(answers)
        if done:
            stop.set()
        return done

    lost.lost("a1", T0)
    task = asyncio.create_task(sweep_lost_agents(lost, sweep, 0.01, stop))
    for _ in range(20):  # the loop looks, finds nothing due, and waits for the grace
        await asyncio.sleep(0)
    assert swept == [] and not task.done()
    clock.advance(60)
    lost.wake.set()
    await asyncio.wait_for(task, timeout=10)
    assert swept == ["a1", "a1"] and lost.pending() == []

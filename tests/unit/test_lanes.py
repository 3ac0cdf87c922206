"""``Lanes``: each lane in order, the lanes at once, room for the next fetch while a lane is slow,
queued messages kept alive, and no lane wedged by a message that could not be settled. Fake
messages (the real consumer is in tests/integration/test_agent.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from services.common.lanes import Lanes
from tests.support.waiting import async_wait_for


class FakeMsg:
    def __init__(self, name: str) -> None:
        self.name, self.lane, self.subject = name, name[0], f"ev.{name}"
        self.kept_alive = 0

    async def in_progress(self) -> None:
        self.kept_alive += 1


class Gated:
    """A ``run_one`` that records the order of starts and ends and waits for each message's gate."""

    def __init__(self, *, fail: Callable[[FakeMsg], bool] = lambda _: False) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.ended: list[str] = []
        self.fail = fail

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def __call__(self, msg: FakeMsg) -> None:
        self.started.append(msg.name)
        await self.gate(msg.name).wait()
        self.ended.append(msg.name)
        if self.fail(msg):
            raise ConnectionError("could not ack")

    def open(self, *names: str) -> None:
        for name in names:
            self.gate(name).set()


def lanes(run: Gated, limit: int = 8, keep_alive: float = 60.0) -> Lanes:
    return Lanes(limit, lambda msg: msg.lane, run, keep_alive=keep_alive)  # type: ignore[arg-type, return-value]


async def settled() -> None:
    """Lets every ready task run until none is left to (no timer involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_each_lane_in_order_and_the_lanes_at_once() -> None:
    run = Gated()
    running = lanes(run)
    await running.accept([FakeMsg("a1"), FakeMsg("a2"), FakeMsg("b1")])  # type: ignore[list-item]
    await settled()
    assert run.started == ["a1", "b1"], "a2 began before a1 ended, or b1 waited for lane a"
    run.open("b1")
    await async_wait_for(lambda: run.ended == ["b1"])
    run.open("a2")
    await settled()
    assert "a2" not in run.started, "a2 ran before a1"
    run.open("a1")
    await async_wait_for(lambda: run.ended == ["b1", "a1", "a2"])
    assert running.held == 0
    await running.close()


async def test_the_next_fetch_waits_for_room_never_for_a_slow_lane() -> None:
    run = Gated()
    running = lanes(run, limit=3)
    await asyncio.wait_for(running.accept([FakeMsg("a1")]), timeout=10)  # type: ignore[list-item]
    assert run.started == ["a1"] and running.held == 1  # returned while a1 is still being handled
    full = asyncio.ensure_future(running.accept([FakeMsg("b1"), FakeMsg("c1"), FakeMsg("d1")]))  # type: ignore[list-item]
    await settled()
    assert run.started == ["a1", "b1", "c1", "d1"], "held messages did not start in their own lanes"
    assert not full.done(), "returned with the limit held"
    run.open("b1")
    await async_wait_for(lambda: running.held == 3)
    await settled()
    assert not full.done(), "returned with the limit held"
    run.open("c1")
    await asyncio.wait_for(full, timeout=10)
    assert running.held == 2
    await running.close()


async def test_messages_queued_behind_a_slow_one_are_kept_alive() -> None:
    run = Gated()
    running = lanes(run, keep_alive=0.01)
    first, queued = FakeMsg("a1"), FakeMsg("a2")
    await running.accept([first, queued])  # type: ignore[list-item]
    await async_wait_for(lambda: queued.kept_alive >= 2, message="a queued message's ack deadline was not pushed back")
    assert first.kept_alive == 0  # the one being handled is kept alive by its Settler
    await running.close()


async def test_a_message_that_could_not_be_settled_does_not_wedge_its_lane() -> None:
    run = Gated(fail=lambda msg: msg.name == "a1")
    running = lanes(run, limit=2)
    run.open("a1", "a2", "b1")
    await running.accept([FakeMsg("a1"), FakeMsg("a2")])  # type: ignore[list-item]
    await running.accept([FakeMsg("b1")])  # type: ignore[list-item]
    await async_wait_for(lambda: run.ended == ["a1", "a2", "b1"] and running.held == 0)
    await running.close()


async def test_close_cancels_what_is_held() -> None:
    run = Gated()
    running = lanes(run)
    await running.accept([FakeMsg("a1"), FakeMsg("a2")])  # type: ignore[list-item]
    await settled()
    await running.close()
    assert run.ended == []  # unsettled: the server delivers them again


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Lanes(0, lambda msg: msg, lambda msg: asyncio.sleep(0))  # type: ignore[arg-type, return-value]
